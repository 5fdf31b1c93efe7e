{{/* Names and labels shared by every template. */}}

{{- define "swarm-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "swarm-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "swarm-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "swarm-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "swarm-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "swarm-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: swarm-operator
{{- end }}

{{- define "swarm-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "swarm-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the default E2B key: the user's, or the one this chart creates. */}}
{{- define "swarm-operator.apiKeySecret" -}}
{{- if .Values.e2b.apiKey.existingSecret }}
{{- .Values.e2b.apiKey.existingSecret }}
{{- else }}
{{- printf "%s-e2b" (include "swarm-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "swarm-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Peering (one active pod among standbys) is on exactly when there are standbys. */}}
{{- define "swarm-operator.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}
{{- default (include "swarm-operator.fullname" .) .Values.peering.name }}
{{- end }}
{{- end }}

{{/*
Sharding (sharding.shards > 1): one Deployment per shard. "swarm-operator.shardSuffix" takes
(list $ index) and gives "-<index>" when sharded, "" otherwise; names, the operator id, the peering
object and the released-sandboxes record all carry it, so no two shards share any of them.
*/}}
{{- define "swarm-operator.sharded" -}}
{{- if gt (int .Values.sharding.shards) 1 }}true{{ end }}
{{- end }}

{{- define "swarm-operator.shardSuffix" -}}
{{- $root := index . 0 }}
{{- if include "swarm-operator.sharded" $root }}-{{ index . 1 }}{{ end }}
{{- end }}

{{/* The operator id (sandbox tag, released record name) of shard (list $ index): at most 63. */}}
{{- define "swarm-operator.operatorId" -}}
{{- $root := index . 0 }}
{{- $suffix := include "swarm-operator.shardSuffix" . }}
{{- printf "%s%s" (include "swarm-operator.fullname" $root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* Namespaces this release serves ("" list in cluster mode). */}}
{{- define "swarm-operator.clusterwide" -}}
{{- if eq .Values.watch.mode "cluster" }}true{{ end }}
{{- end }}

{{- define "swarm-operator.validate" -}}
{{- if and (eq .Values.watch.mode "namespaces") (not .Values.watch.namespaces) }}
{{- fail "watch.mode=namespaces needs at least one namespace in watch.namespaces" }}
{{- end }}
{{- if and .Values.e2b.apiKey.existingSecret .Values.e2b.apiKey.value }}
{{- fail "set e2b.apiKey.existingSecret or e2b.apiKey.value, not both" }}
{{- end }}
{{- end }}

{{/*
Comma-separated glob patterns as a CEL list of anchored RE2 regexes: '*' any run, '?' one
character, everything else literal (swarm_operator.lifecycle.tenancy.glob_match reads them alike).
*/}}
{{- define "swarm-operator.globRegexes" -}}
{{- $out := list }}
{{- range splitList "," . }}
{{- $p := trim . }}
{{- if $p }}
{{- $re := regexQuoteMeta $p | replace "\\*" ".*" | replace "\\?" "." }}
{{- $out = append $out (printf "r'^%s$'" $re) }}
{{- end }}
{{- end }}
{{- printf "[%s]" (join ", " $out) }}
{{- end }}
