{{/*
Names and labels shared by the templates. Label keys and the default Redis
Secret follow wasp's contract (src/wasp/contract.py).
*/}}

{{/* The release's base name: the release name, prefixed with "wasp-" unless it holds "wasp". */}}
{{- define "wasp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Chart.Name .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The operator's Deployment (and its RBAC objects' base name). */}}
{{- define "wasp.operatorName" -}}
{{- printf "%s-operator" (include "wasp.fullname" .) -}}
{{- end -}}

{{- define "wasp.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "wasp.operatorName" .) -}}
{{- end -}}

{{/* The trial Redis's Deployment and Service. */}}
{{- define "wasp.redisName" -}}
{{- printf "%s-redis" (include "wasp.fullname" .) -}}
{{- end -}}

{{- define "wasp.labels" -}}
app.kubernetes.io/name: wasp
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "wasp.operatorSelector" -}}
app.kubernetes.io/name: wasp
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "wasp.redisSelector" -}}
app.kubernetes.io/name: wasp
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{/* The operator's image: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "wasp.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The default Redis Secret: the user's own, else the chart's "wasp-redis" (contract.DEFAULT_REDIS_SECRET). */}}
{{- define "wasp.redisSecretName" -}}
{{- .Values.redis.existingSecret | default "wasp-redis" -}}
{{- end -}}

{{- define "wasp.redisSecretKey" -}}
{{- if .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecretKey -}}
{{- else -}}
url
{{- end -}}
{{- end -}}

{{/* Namespaces that get the chart's default Redis Secret, as a JSON list. */}}
{{- define "wasp.redisSecretNamespaces" -}}
{{- if .Values.redis.secretNamespaces -}}
{{- .Values.redis.secretNamespaces | uniq | toJson -}}
{{- else -}}
{{- list (.Values.watchNamespace | default .Release.Namespace) | toJson -}}
{{- end -}}
{{- end -}}

{{/* Refuse contradictory Redis settings, saying which keys clash. */}}
{{- define "wasp.validate" -}}
{{- $sources := list -}}
{{- if .Values.redis.url }}{{ $sources = append $sources "redis.url" }}{{ end -}}
{{- if .Values.redis.existingSecret }}{{ $sources = append $sources "redis.existingSecret" }}{{ end -}}
{{- if .Values.redis.inChart.enabled }}{{ $sources = append $sources "redis.inChart.enabled" }}{{ end -}}
{{- if gt (len $sources) 1 -}}
{{- fail (printf "set only one of redis.url, redis.existingSecret and redis.inChart.enabled (got %s)" (join ", " $sources)) -}}
{{- end -}}
{{- if and .Values.redis.existingSecret .Values.redis.secretNamespaces -}}
{{- fail "redis.secretNamespaces says where the chart creates its Secret; with redis.existingSecret it creates none: leave it empty" -}}
{{- end -}}
{{- end -}}

{{/* A resources block (requests, limits) without the quantities left empty. */}}
{{- define "wasp.resources" -}}
{{- $out := dict -}}
{{- range $kind, $quantities := . -}}
{{- $kept := dict -}}
{{- range $name, $quantity := $quantities -}}
{{- if $quantity }}{{ $_ := set $kept $name $quantity }}{{ end -}}
{{- end -}}
{{- if $kept }}{{ $_ := set $out $kind $kept }}{{ end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}
