{{/* Object names: the release name if it already says iommufd-device-plugin, else both. */}}
{{- define "iommufd-device-plugin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* What the pods are selected by: the kustomize base's name label, plus the release. */}}
{{- define "iommufd-device-plugin.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
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

{{/* The PodMonitor's and PrometheusRule's: the name label, as in deploy/components/metrics, and Helm's. */}}
{{- define "iommufd-device-plugin.monitoringLabels" -}}
{{ include "iommufd-device-plugin.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
