"""A real etcd + kube-apiserver, alone, for the API-client tests (issue 23).

Started in a private temp dir on free loopback ports (never 2379/6443: the real test
cluster may be up), serving a certificate we make with the openssl CLI (IP SAN
127.0.0.1), with static tokens (--token-auth-file) for an admin, a driver identity bound
by RBAC to the ClusterRole the DRA driver needs, and one with no rights at all. The
binaries are the test cluster's (tests/cluster/build.sh prints their dir; warm it is a
cache hit). kubectl runs as the admin.
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

from kubelet import REPO, deadline

TOKENS = {"admin": "admin-token-0123456789", "driver": "driver-token-0123456789", "nobody": "nobody-token-0123456789"}

DRIVER_RBAC = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: iommufd-dra-driver}
rules:
- apiGroups: [resource.k8s.io]
  resources: [resourceslices]
  verbs: [get, list, watch, create, update, delete]
- apiGroups: [resource.k8s.io]
  resources: [resourceclaims]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: iommufd-dra-driver}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: iommufd-dra-driver}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: dra-driver}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_bin_dir():
    out = subprocess.run([os.path.join(REPO, "tests/cluster/build.sh")], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=%s" % name,
            "-keyout", "%s.key" % name, "-out", "%s.crt" % name, cwd=d)


class KubeAPI:
    def __init__(self):
        self.bin = cluster_bin_dir()
        self.dir = tempfile.mkdtemp(prefix="kubeapi-")
        d = self.dir
        make_ca(d, "ca")
        make_ca(d, "wrong-ca")  # a CA that did not sign the server's certificate
        with open(os.path.join(d, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=kube-apiserver", "-keyout", "server.key",
                "-out", "server.csr", cwd=d)
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=d)
        openssl("genrsa", "-out", "sa.key", "2048", cwd=d)
        openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)
        with open(os.path.join(d, "tokens.csv"), "w") as f:
            f.write('%s,admin,uid-admin,"system:masters"\n' % TOKENS["admin"])
            f.write("%s,dra-driver,uid-driver\n" % TOKENS["driver"])
            f.write("%s,nobody,uid-nobody\n" % TOKENS["nobody"])
        for who, token in TOKENS.items():
            with open(self.token_file(who), "w") as f:
                f.write(token + "\n")
        self.etcd_port, self.peer_port, self.port = free_port(), free_port(), free_port()
        self.etcd = self.apiserver = None
        self.logs = []
        self.etcd = self._spawn("etcd", [
            os.path.join(self.bin, "etcd"), "--name", "default", "--data-dir", os.path.join(d, "etcd"),
            "--listen-client-urls", "http://127.0.0.1:%d" % self.etcd_port,
            "--advertise-client-urls", "http://127.0.0.1:%d" % self.etcd_port,
            "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer_port,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer_port,
            "--initial-cluster", "default=http://127.0.0.1:%d" % self.peer_port,
            "--unsafe-no-fsync", "--log-level", "warn"])
        self.start_apiserver()
        self.kubectl("apply", "-f", "-", input=DRIVER_RBAC)

    def token_file(self, who):
        return os.path.join(self.dir, "%s.token" % who)

    def _spawn(self, name, argv):
        log = open(os.path.join(self.dir, "%s-%d.log" % (name, len(self.logs))), "w")
        self.logs.append(log)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def start_apiserver(self):
        d = self.dir
        self.apiserver = self._spawn("kube-apiserver", [
            os.path.join(self.bin, "kube-apiserver"), "--bind-address", "127.0.0.1",
            "--advertise-address", "127.0.0.1", "--secure-port", str(self.port),
            "--endpoint-reconciler-type", "none", "--etcd-servers", "http://127.0.0.1:%d" % self.etcd_port,
            "--tls-cert-file", os.path.join(d, "server.crt"), "--tls-private-key-file", os.path.join(d, "server.key"),
            "--token-auth-file", os.path.join(d, "tokens.csv"), "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", os.path.join(d, "sa.pub"),
            "--service-account-signing-key-file", os.path.join(d, "sa.key"),
            "--service-cluster-ip-range", "10.250.0.0/24", "--cert-dir", os.path.join(d, "certs"), "--v", "1"])
        end = time.monotonic() + deadline(180)
        while time.monotonic() < end:
            if self.apiserver.poll() is not None:
                raise AssertionError("kube-apiserver exited %d; log in %s" % (self.apiserver.returncode, d))
            r = self.kubectl("get", "--raw", "/readyz", check=False)
            if r.returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError("kube-apiserver not ready within the deadline; log in %s" % d)

    def stop_apiserver(self):
        self.apiserver.terminate()
        self.apiserver.wait(timeout=60)

    def kubectl(self, *args, input=None, check=True):
        argv = [os.path.join(self.bin, "kubectl"), "--server", "https://127.0.0.1:%d" % self.port,
                "--certificate-authority", os.path.join(self.dir, "ca.crt"), "--token", TOKENS["admin"], *args]
        r = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=deadline(60))
        if check and r.returncode != 0:
            raise AssertionError("kubectl %s failed: %s" % (" ".join(args), r.stderr))
        return r

    def get_json(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def close(self):
        for p in (self.apiserver, self.etcd):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
