{{/* The chart's name in labels and object names: nameOverride, else the chart's. */}}
{{- define "iommufd-device-plugin.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names: fullnameOverride; else the release name if it already says the
name, else both. */}}
{{- define "iommufd-device-plugin.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "iommufd-device-plugin.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The namespace of every object: namespaceOverride, else the release's. A node agent
in "default" is a mistake (no Pod Security label fits both it and ordinary pods), so
that is refused unless allowDefaultNamespace. */}}
{{- define "iommufd-device-plugin.namespace" -}}
{{- $ns := default .Release.Namespace .Values.namespaceOverride -}}
{{- if and (eq $ns "default") (not .Values.allowDefaultNamespace) -}}
{{- fail "installing into the namespace \"default\": pass --namespace (e.g. kube-system, or a namespace of its own labelled pod-security.kubernetes.io/enforce=privileged), or set allowDefaultNamespace=true" -}}
{{- end -}}
{{- $ns -}}
{{- end -}}

{{/* What the pods are selected by: the kustomize base's name label, plus the release. */}}
{{- define "iommufd-device-plugin.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iommufd-device-plugin.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The kustomize base's labels, then the ones Helm charts carry. */}}
{{- define "iommufd-device-plugin.labels" -}}
{{ include "iommufd-device-plugin.selectorLabels" . }}
app.kubernetes.io/component: device-plugin
app.kubernetes.io/part-of: kubevirt
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The other objects': the name label, as in deploy/components, and Helm's. */}}
{{- define "iommufd-device-plugin.objectLabels" -}}
{{ include "iommufd-device-plugin.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The PodMonitor's and PrometheusRule's: those and metrics.additionalLabels (for a
Prometheus that selects them by label). */}}
{{- define "iommufd-device-plugin.monitoringLabels" -}}
{{ include "iommufd-device-plugin.objectLabels" . }}
{{- with .Values.metrics.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The image reference; the repository is required (no image is published). */}}
{{- define "iommufd-device-plugin.image" -}}
{{- $repository := required "image.repository is required: the registry and name you pushed the image to, e.g. --set image.repository=registry.example.org/kubevirt/iommufd-device-plugin (make image builds it; docs/install.md, \"Get the image\")" .Values.image.repository -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The DRA driver's image reference (an image of its own, mode dra or both); the
repository is required there, as image.repository is for the device plugin. */}}
{{- define "iommufd-device-plugin.draImage" -}}
{{- $repository := required (printf "dra.image.repository is required with mode %s: the registry and name you pushed the DRA driver's image to, e.g. --set dra.image.repository=registry.example.org/kubevirt/iommufd-dra-driver (make image builds it; docs/install.md, \"Get the image\")" .Values.mode) .Values.dra.image.repository -}}
{{- printf "%s:%s" $repository (.Values.dra.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The DRA driver's name in labels: nameOverride's counterpart is not offered, one
name for every release (the DeviceClass selects by driver name, not by this). */}}
{{- define "iommufd-device-plugin.draName" -}}
iommufd-dra-driver
{{- end -}}

{{/* The DRA driver's object names: the plugin's with its name part replaced, so a
release "second" gives second-iommufd-dra-driver; a fullnameOverride without the name
gets "-dra" appended. */}}
{{- define "iommufd-device-plugin.draFullname" -}}
{{- $full := include "iommufd-device-plugin.fullname" . -}}
{{- $dra := replace (include "iommufd-device-plugin.name" .) (include "iommufd-device-plugin.draName" .) $full -}}
{{- if eq $dra $full -}}
{{- $dra = printf "%s-dra" $full -}}
{{- end -}}
{{- $dra | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iommufd-device-plugin.draSelectorLabels" -}}
app.kubernetes.io/name: {{ include "iommufd-device-plugin.draName" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iommufd-device-plugin.draLabels" -}}
{{ include "iommufd-device-plugin.draSelectorLabels" . }}
app.kubernetes.io/component: dra-driver
app.kubernetes.io/part-of: kubevirt
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "iommufd-device-plugin.draObjectLabels" -}}
{{ include "iommufd-device-plugin.draSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* One node, one mode (KEP-5004): the affinity values with, in every required node
selector term (terms are ORed, so each one), "<nodeModeLabel> <operator> [dra]": NotIn
for the device plugin, In for the DRA driver. A nodeSelector naming the label is
refused: it could only contradict or repeat this rule.
Call with (dict "root" $ "operator" "NotIn"). */}}
{{- define "iommufd-device-plugin.modeAffinity" -}}
{{- $root := .root -}}
{{- if hasKey $root.Values.nodeSelector $root.Values.nodeModeLabel -}}
{{- fail (printf "nodeSelector names %s, the label that picks device plugin or DRA per node: leave it out (mode and the node label decide; docs/install.md, \"Device plugin or DRA\")" $root.Values.nodeModeLabel) -}}
{{- end -}}
{{- $expression := dict "key" $root.Values.nodeModeLabel "operator" .operator "values" (list "dra") -}}
{{- $affinity := deepCopy ($root.Values.affinity | default dict) -}}
{{- $node := deepCopy (get $affinity "nodeAffinity" | default dict) -}}
{{- $required := deepCopy (get $node "requiredDuringSchedulingIgnoredDuringExecution" | default dict) -}}
{{- $terms := list -}}
{{- range (get $required "nodeSelectorTerms" | default (list dict)) -}}
{{- $term := deepCopy . -}}
{{- $_ := set $term "matchExpressions" (append (get $term "matchExpressions" | default list) $expression) -}}
{{- $terms = append $terms $term -}}
{{- end -}}
{{- $_ := set $required "nodeSelectorTerms" $terms -}}
{{- $_ := set $node "requiredDuringSchedulingIgnoredDuringExecution" $required -}}
{{- $_ := set $affinity "nodeAffinity" $node -}}
{{- toYaml $affinity -}}
{{- end -}}

{{/* The IOMMUFD_DP_* variables both daemons take, set only when given (empty or null
leaves the daemon's default). */}}
{{- define "iommufd-device-plugin.sharedEnv" -}}
{{- $optional := list
      (list "IOMMUFD_DP_DEVICES" .Values.devices)
      (list "IOMMUFD_DP_RLIMIT_MODE" .Values.rlimitMode)
      (list "IOMMUFD_DP_SOCKET_MODE" .Values.handoff.socketMode)
      (list "IOMMUFD_DP_SOCKET_OWNER" .Values.handoff.socketOwner)
      (list "IOMMUFD_DP_ALLOWED_UIDS" .Values.handoff.allowedUids)
      (list "IOMMUFD_DP_HANDOFF_TTL" .Values.handoff.ttl)
      (list "IOMMUFD_DP_DRAIN_TIMEOUT" .Values.handoff.drainTimeout)
      (list "IOMMUFD_DP_LOG_FORMAT" .Values.logFormat)
      (list "IOMMUFD_DP_V" .Values.verbosity) -}}
{{- range $optional }}
{{- $value := index . 1 }}
{{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
- name: {{ index . 0 }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}
