"""A fake kubelet on python3-grpcio: the real peer of the device plugin.

* ``pb``: message classes generated at import time from proto/deviceplugin.proto
  with protoc (no grpc_tools on the machine), into a temporary directory.
* ``FakeKubelet``: the Registration service on <dir>/kubelet.sock. It records
  every Register request and can be restarted the way a starting kubelet does it:
  every socket in the directory is removed, then kubelet.sock is created anew.
* ``DevicePluginClient``: a client for all five DevicePlugin methods, built on
  grpc's generic API (no generated stubs).
* ``FakePodResources``: the kubelet's PodResourcesLister List (messages ``podpb``
  from proto/podresources.proto), answering with the pods a test sets.
"""

import atexit
import importlib
import os
import queue
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def is_sanitized(binary):
    try:
        with open(binary, "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"AddressSanitizer" in data
    except OSError:
        return False


def _wait_scale():
    """How much longer than a quiet machine's any wait for the daemon may take. Waits end
    as soon as what they wait for happens, so a generous deadline costs a passing test
    nothing; it only keeps a loaded CI machine, ASan or valgrind from failing one.
    TEST_WAIT_SCALE overrides it."""
    if os.environ.get("TEST_WAIT_SCALE"):
        return float(os.environ["TEST_WAIT_SCALE"])
    if os.environ.get("PLUGIN_WRAPPER"):
        return 10.0  # valgrind
    binary = os.environ.get("PLUGIN_BIN") or os.path.join(REPO, "build", "iommufd-device-plugin")
    return 4.0 if is_sanitized(binary) else 2.0


WAIT_SCALE = _wait_scale()


def deadline(seconds):
    """A wait's timeout for this run (None: no deadline)."""
    return None if seconds is None else seconds * WAIT_SCALE
PROTO = os.path.join(REPO, "proto", "deviceplugin.proto")
KUBELET_SOCKET = "kubelet.sock"
API_VERSION = "v1beta1"


def _generate_messages():
    out = tempfile.mkdtemp(prefix="dp-proto-")
    atexit.register(shutil.rmtree, out, True)
    subprocess.run(
        ["protoc", "--proto_path=" + os.path.dirname(PROTO), "--python_out=" + out, PROTO, POD_RESOURCES_PROTO],
        check=True,
    )
    sys.path.insert(0, out)
    return importlib.import_module("deviceplugin_pb2"), importlib.import_module("podresources_pb2")


POD_RESOURCES_PROTO = os.path.join(REPO, "proto", "podresources.proto")
pb, podpb = _generate_messages()


def _unary(channel, service, method, req_cls, resp_cls):
    return channel.unary_unary(
        "/%s.%s/%s" % (API_VERSION, service, method),
        request_serializer=req_cls.SerializeToString,
        response_deserializer=resp_cls.FromString,
    )


class DevicePluginClient:
    """The kubelet's side of the DevicePlugin service, on a unix socket."""

    def __init__(self, socket_path, options=None, compression=None):
        self.socket_path = os.path.abspath(socket_path)
        # A private subchannel pool: otherwise grpcio silently shares one connection among
        # all channels with the same target and options, and "a new client" is not a new
        # connection to the daemon.
        opts = [("grpc.use_local_subchannel_pool", 1)] + list(options or [])
        self.channel = grpc.insecure_channel("unix://" + self.socket_path, options=opts, compression=compression)
        ch = self.channel
        self._options = _unary(ch, "DevicePlugin", "GetDevicePluginOptions", pb.Empty, pb.DevicePluginOptions)
        self._preferred = _unary(ch, "DevicePlugin", "GetPreferredAllocation",
                                 pb.PreferredAllocationRequest, pb.PreferredAllocationResponse)
        self._allocate = _unary(ch, "DevicePlugin", "Allocate", pb.AllocateRequest, pb.AllocateResponse)
        self._pre_start = _unary(ch, "DevicePlugin", "PreStartContainer",
                                 pb.PreStartContainerRequest, pb.PreStartContainerResponse)
        self._list_and_watch = ch.unary_stream(
            "/%s.DevicePlugin/ListAndWatch" % API_VERSION,
            request_serializer=pb.Empty.SerializeToString,
            response_deserializer=pb.ListAndWatchResponse.FromString,
        )

    def close(self):
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_ready(self, timeout=5.0):
        grpc.channel_ready_future(self.channel).result(timeout=deadline(timeout))

    def get_device_plugin_options(self, timeout=5.0):
        return self._options(pb.Empty(), timeout=deadline(timeout))

    def list_and_watch(self, timeout=None):
        """Returns the call: iterate it for ListAndWatchResponse, ``cancel()`` it to stop."""
        return self._list_and_watch(pb.Empty(), timeout=deadline(timeout))

    def get_preferred_allocation(self, container_requests, timeout=5.0):
        """container_requests: list of (available, must_include, size)."""
        req = pb.PreferredAllocationRequest()
        for available, must_include, size in container_requests:
            req.container_requests.add(
                available_deviceIDs=available, must_include_deviceIDs=must_include, allocation_size=size
            )
        return self._preferred(req, timeout=deadline(timeout))

    def allocate(self, *containers, timeout=5.0):
        """Each argument is the list of device ids of one container request."""
        return self._allocate(allocate_request(*containers), timeout=deadline(timeout))

    def allocate_raw(self, request, timeout=5.0):
        return self._allocate(request, timeout=deadline(timeout))

    def pre_start_container(self, device_ids, timeout=5.0):
        return self._pre_start(pb.PreStartContainerRequest(devices_ids=device_ids), timeout=deadline(timeout))

    def call_raw(self, full_method, payload=b"", timeout=5.0):
        """Unary call of any method path with raw request bytes; returns the raw response bytes."""
        fn = self.channel.unary_unary(full_method, request_serializer=None, response_deserializer=None)
        return fn(payload, timeout=deadline(timeout))


def allocate_request(*containers):
    req = pb.AllocateRequest()
    for ids in containers:
        req.container_requests.add(devices_ids=list(ids))
    return req


class FakeKubelet:
    """The Registration service of a kubelet, on <directory>/kubelet.sock."""

    def __init__(self, directory):
        self.directory = os.path.abspath(directory)
        self.socket_path = os.path.join(self.directory, KUBELET_SOCKET)
        self._server = None
        self._requests = queue.Queue()
        self._lock = threading.Lock()
        self._fail_next = 0
        self._fail_message = None
        self.register_count = 0
        self.history = []  # every RegisterRequest ever received, in order

    # -- Registration service ------------------------------------------------
    def _register(self, request, context):
        with self._lock:
            self.register_count += 1
            self.history.append(request)
            failing = self._fail_next > 0
            if failing:
                self._fail_next -= 1
            message = self._fail_message
        self._requests.put(request)
        if failing and message:
            # As the real kubelet answers (status UNKNOWN: a plain Go error).
            context.abort(grpc.StatusCode.UNKNOWN, message % os.path.join(self.directory, request.endpoint))
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "fake kubelet: refusing this registration")
        return pb.Empty()

    def fail_next_registrations(self, n, message=None):
        """The next n Register calls are answered UNAVAILABLE, or UNKNOWN with message
        (%s: the endpoint's path), as the real kubelet answers a path it still holds
        ("device plugin already connected: %s"). They are still recorded."""
        with self._lock:
            self._fail_next = n
            self._fail_message = message

    def wait_register(self, timeout=5.0):
        """The next Register request received (raises queue.Empty after timeout)."""
        return self._requests.get(timeout=deadline(timeout))

    def drain(self):
        out = []
        while True:
            try:
                out.append(self._requests.get_nowait())
            except queue.Empty:
                return out

    # -- lifecycle -------------------------------------------------------------
    @property
    def running(self):
        return self._server is not None

    def start(self):
        assert self._server is None, "fake kubelet already running"
        os.makedirs(self.directory, exist_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            API_VERSION + ".Registration",
            {
                "Register": grpc.unary_unary_rpc_method_handler(
                    self._register,
                    request_deserializer=pb.RegisterRequest.FromString,
                    response_serializer=pb.Empty.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port("unix:" + self.socket_path)
        server.start()
        self._server = server

    def stop(self):
        if self._server is None:
            return
        self._server.stop(None).wait(5)
        self._server = None
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    def wipe_sockets(self):
        """What the kubelet's device manager does at start: remove every socket in the directory."""
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            try:
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            except FileNotFoundError:
                pass

    def restart(self):
        """Stop, then start like a starting kubelet: wipe every socket, create kubelet.sock anew."""
        self.stop()
        self.wipe_sockets()
        self.start()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class FakePodResources:
    """The kubelet's PodResources API v1 (List only) on a unix socket.

    ``pods`` is what List answers: a list of (namespace, pod, [(container, resource,
    [device ids])]). ``list_calls`` counts the calls; ``stall`` seconds make List wait
    before answering (a stuck kubelet); ``fail`` makes it answer with that status code.
    """

    def __init__(self, socket_path):
        self.socket_path = os.path.abspath(socket_path)
        self.pods = []
        self.stall = 0.0
        self.fail = None
        self.list_calls = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = None

    def hold(self, namespace, pod, container, resource, device_ids):
        """One more pod whose one container holds device_ids of resource."""
        with self._lock:
            self.pods.append((namespace, pod, [(container, resource, list(device_ids))]))

    def clear(self):
        with self._lock:
            self.pods = []

    def unstall(self):
        """Answers the stalled calls now, and every later one at once."""
        with self._lock:
            self.stall = 0.0
        self._release.set()

    def _list(self, request, context):
        with self._lock:
            self.list_calls += 1
            stall, fail, pods = self.stall, self.fail, list(self.pods)
        if stall:
            self._release.wait(stall)
        if fail is not None:
            context.abort(fail, "fake kubelet: List fails")
        resp = podpb.ListPodResourcesResponse()
        for namespace, name, containers in pods:
            pod = resp.pod_resources.add(name=name, namespace=namespace)
            for container, resource, ids in containers:
                pod.containers.add(name=container).devices.add(resource_name=resource, device_ids=ids)
        return resp

    def wait_calls(self, n, timeout=10.0):
        timeout = deadline(timeout)
        end = time.monotonic() + timeout
        while self.list_calls < n:
            if time.monotonic() >= end:
                raise AssertionError("%d List calls after %.1f s, wanted %d" % (self.list_calls, timeout, n))
            time.sleep(0.02)

    def start(self):
        assert self._server is None, "fake PodResources already running"
        self._release.clear()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.method_handlers_generic_handler(
            "v1.PodResourcesLister",
            {
                "List": grpc.unary_unary_rpc_method_handler(
                    self._list,
                    request_deserializer=podpb.ListPodResourcesRequest.FromString,
                    response_serializer=podpb.ListPodResourcesResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port("unix:" + self.socket_path)
        server.start()
        self._server = server

    def stop(self):
        if self._server is None:
            return
        self._release.set()
        self._server.stop(None).wait(5)
        self._server = None
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
