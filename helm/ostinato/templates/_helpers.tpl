{{/*
Template helpers shared by every template of the chart (helper C's rbac.yaml and webhook*.yaml
use them too): names, labels and the ServiceAccount name.
*/}}

{{/* The chart's name, overridable with nameOverride; 63 characters at most (DNS label). */}}
{{- define "ostinato.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The fully qualified name of the release's objects: fullnameOverride, else the release name when it
already contains the chart name, else "<release>-<chart>"; 63 characters at most.
*/}}
{{- define "ostinato.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<chart>-<version>" for the helm.sh/chart label. */}}
{{- define "ostinato.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels that select the operator's pods. Component "operator" keeps them apart from the hub and
loop pods the operator creates, which carry app.kubernetes.io/name: ostinato as well.
*/}}
{{- define "ostinato.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ostinato.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels on every object the chart renders. */}}
{{- define "ostinato.labels" -}}
helm.sh/chart: {{ include "ostinato.chart" . }}
{{ include "ostinato.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ostinato
{{- end -}}

{{/* The ServiceAccount the operator runs as: the chart's own, or the one named in values. */}}
{{- define "ostinato.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ostinato.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The operator's image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "ostinato.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{/*
The namespaces the operator watches, as a list; empty means cluster-wide (--all-namespaces and a
ClusterRole instead of Roles).
*/}}
{{- define "ostinato.watchNamespaces" -}}
{{- .Values.watch.namespaces | default list | toJson -}}
{{- end -}}

{{/* "true" when the operator watches the whole cluster (no namespaces listed). */}}
{{- define "ostinato.clusterWide" -}}
{{- if .Values.watch.namespaces -}}false{{- else -}}true{{- end -}}
{{- end -}}
