module iommufd-device-plugin/tests/cluster/consumer

go 1.24.0

// v0.40.0: the golang.org/x/sys that kubevirt.io/kubevirt v1.9.0's go.mod requires, so
// ParseSocketControlMessage and ParseUnixRights are the very code virt-launcher runs.
require golang.org/x/sys v0.40.0
