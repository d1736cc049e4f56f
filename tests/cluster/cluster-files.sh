# What the test cluster is made of, sourced by cluster.sh (its variables: $state,
# $node, the ports, CIDRs and $bin): the PKI (a CA, each component's certificate and
# kubeconfig) and every component's configuration file, CNI's included. cluster.sh
# runs the processes; this file only writes files under $state.
# shellcheck shell=bash disable=SC2154

# ---------------------------------------------------------------- certificates ----

# cert NAME CN O [SANS]: a key and a certificate signed by the cluster CA.
cert() {
	local name=$1 cn=$2 o=$3 sans=${4:-} d=$state/pki ext
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/$name.key" 2>/dev/null
	openssl req -new -key "$d/$name.key" -subj "/CN=$cn${o:+/O=$o}" -out "$d/$name.csr" 2>/dev/null
	ext=$d/$name.ext
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [ -n "$sans" ]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=$sans"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$ext"
	openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
		-days 30 -sha256 -extfile "$ext" -out "$d/$name.crt" 2>/dev/null ||
		die "openssl could not sign $name"
	rm -f "$d/$name.csr" "$ext"
}

make_pki() {
	local d=$state/pki
	mkdir -p "$d"
	chmod 0700 "$d"
	say "certificates (openssl)"
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null
	openssl req -x509 -new -key "$d/ca.key" -subj "/CN=iommufd-cluster-ca" -days 30 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$d/ca.crt" 2>/dev/null || die "openssl could not make the CA"
	cert apiserver kube-apiserver "" \
		"IP:127.0.0.1,IP:$service_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	cert admin kubernetes-admin system:masters
	cert controller-manager system:kube-controller-manager ""
	cert scheduler system:kube-scheduler ""
	cert kubelet "system:node:$node" system:nodes
	cert kubelet-serving "$node" "" "IP:127.0.0.1,DNS:localhost,DNS:$node"
	openssl ecparam -name prime256v1 -genkey -noout -out "$d/sa.key" 2>/dev/null
	openssl ec -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null || die "openssl: service-account key"
}

# kubeconfig NAME CERT: $state/kubeconfig/NAME, the client cert CERT against the apiserver.
kubeconfig() {
	local d=$state/pki
	mkdir -p "$state/kubeconfig"
	cat >"$state/kubeconfig/$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: iommufd-cluster
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority-data: $(base64 -w0 "$d/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$d/$2.crt")
    client-key-data: $(base64 -w0 "$d/$2.key")
contexts:
- name: iommufd-cluster
  context: {cluster: iommufd-cluster, user: $2}
current-context: iommufd-cluster
EOF
	chmod 0600 "$state/kubeconfig/$1"
}

# ---------------------------------------------------------------- configs ----

write_configs() {
	mkdir -p "$state/config" "$state/cni/net.d" "$state/containerd"
	# containerd 2.x, config version 3: everything under $state, CRI streaming on
	# loopback, NRI off (it would open /var/run/nri), runc with cgroupfs, CDI on.
	cat >"$state/config/containerd.toml" <<EOF
version = 3
root = "$state/containerd/root"
state = "$state/containerd/state"

[grpc]
  address = "$state/containerd/containerd.sock"

[ttrpc]
  address = "$state/containerd/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$state/containerd/opt"

[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "$(cat "$bin/../images/pause.ref")"

[plugins."io.containerd.cri.v1.runtime"]
  # Root without CAP_SYS_RESOURCE (as on this CI's VMs) cannot set the kubelet's
  # negative oom_score_adj (-998 for sandboxes): clamp it to containerd's own.
  restrict_oom_score_adj = true
  enable_cdi = true
  cdi_spec_dirs = ["/etc/cdi", "/var/run/cdi"]
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "$bin/runc"
        Root = "$state/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["$bin/cni"]
    conf_dir = "$state/cni/net.d"

[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOF
	# The pods' network: one bridge, host-local addresses, no default route in the pods
	# and no masquerade, so a pod can reach the host and other pods and nothing else;
	# and one route, to the kubernetes Service's $service_ip via the bridge (the gateway
	# host-local names), for route_kubernetes_service's DNAT (without it a pod's connect
	# to it fails with ENETUNREACH before leaving the pod).
	cat >"$state/cni/net.d/10-iommufd-cluster.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "iommufd-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_subnet"}]],
        "routes": [{"dst": "$service_ip/32"}],
        "dataDir": "$state/cni/ipam"
      }
    }
  ]
}
EOF
	cat >"$state/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $state/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $state/pki/kubelet-serving.crt
tlsPrivateKeyFile: $state/pki/kubelet-serving.key
# This machine has cgroup v1 (Kubernetes 1.35+ refuses it unless told otherwise).
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$state/containerd/containerd.sock
registerNode: true
failSwapOn: false
clusterDomain: cluster.local
maxPods: 110
# A busy or full CI disk must not evict the pods under test, nor collect their images.
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
EOF
}

