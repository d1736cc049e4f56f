"""A device plugin that behaves as KubeVirt's in-tree iommufd plugin in virt-handler
(IOMMUFD feature gate) does towards the kubelet: same socket name, same resource. It
removes the socket path, serves the DevicePlugin service there (Debian's python3-grpcio,
a real gRPC server a real kubelet dials), Registers, and every second serves and
registers again if its socket is gone or replaced or the Register failed. Its Allocate
answers with no mounts: it stands in for the conflict, not for a second iommufd source.

A stand-in: KubeVirt's virt-handler cannot run here (it needs the whole KubeVirt
control plane). Used by test_restarts.py (against the test kubelet) and by
tests/cluster/test_conflict.py (against the real one).
"""

import os
import threading
from concurrent import futures

import grpc

from kubelet import API_VERSION, pb  # messages generated from proto/


class ForeignPlugin:
    def __init__(self, kubelet_dir, socket_name, resource, devices=4):
        self.path = os.path.join(kubelet_dir, socket_name)
        self.kubelet_socket = os.path.join(kubelet_dir, "kubelet.sock")
        self.resource, self.devices = resource, devices
        self.serves = 0  # times it (re)bound the path
        self.registrations = 0  # Register calls the kubelet accepted
        self.streams = 0  # ListAndWatch streams the kubelet opened
        self.allocations = 0
        self.inode = None
        self.registered = False
        self._server = None
        self._stop = threading.Event()
        self._thread = None

    # -- the DevicePlugin service ------------------------------------------------------
    def _options(self, request, context):
        return pb.DevicePluginOptions()

    def _list_and_watch(self, request, context):
        self.streams += 1
        yield pb.ListAndWatchResponse(devices=[pb.Device(ID="kv%d" % i, health="Healthy")
                                               for i in range(self.devices)])
        while not self._stop.is_set() and context.is_active():
            self._stop.wait(0.5)

    def _allocate(self, request, context):
        self.allocations += 1
        return pb.AllocateResponse(container_responses=[pb.ContainerAllocateResponse()
                                                        for _ in request.container_requests])

    def _pre_start(self, request, context):
        return pb.PreStartContainerResponse()

    def _serve(self):
        if self._server:
            self._server.stop(None)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        unary = grpc.unary_unary_rpc_method_handler
        handler = grpc.method_handlers_generic_handler(API_VERSION + ".DevicePlugin", {
            "GetDevicePluginOptions": unary(self._options, pb.Empty.FromString,
                                            pb.DevicePluginOptions.SerializeToString),
            "ListAndWatch": grpc.unary_stream_rpc_method_handler(
                self._list_and_watch, pb.Empty.FromString, pb.ListAndWatchResponse.SerializeToString),
            "Allocate": unary(self._allocate, pb.AllocateRequest.FromString,
                              pb.AllocateResponse.SerializeToString),
            "PreStartContainer": unary(self._pre_start, pb.PreStartContainerRequest.FromString,
                                       pb.PreStartContainerResponse.SerializeToString),
        })
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port("unix:" + self.path)
        server.start()
        self._server = server
        self.inode = os.stat(self.path).st_ino
        self.serves += 1
        self.registered = False

    def _register(self):
        with grpc.insecure_channel("unix://" + self.kubelet_socket) as ch:
            register = ch.unary_unary("/%s.Registration/Register" % API_VERSION,
                                      request_serializer=pb.RegisterRequest.SerializeToString,
                                      response_deserializer=pb.Empty.FromString)
            try:
                register(pb.RegisterRequest(version=API_VERSION, endpoint=os.path.basename(self.path),
                                            resource_name=self.resource), timeout=10)
                self.registered = True
                self.registrations += 1
            except grpc.RpcError as e:
                self.last_error = e.details()
                self.registered = False

    def _run(self):
        while not self._stop.is_set():
            try:
                mine = os.stat(self.path).st_ino == self.inode
            except FileNotFoundError:
                mine = False
            if not mine:
                self._serve()
            if not self.registered:
                self._register()
            self._stop.wait(1.0)

    def start(self):
        """Serves and registers once now, then keeps at it in a thread."""
        self._serve()
        self._register()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self, remove=True):
        """Leaves as KubeVirt's plugin does when the feature gate is turned off: its
        streams end and (remove) its socket goes."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._server:
            self._server.stop(None).wait(10)
        try:
            if remove and os.stat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
