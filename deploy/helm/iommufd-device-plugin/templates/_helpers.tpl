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
