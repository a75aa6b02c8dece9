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

{{/* The namespaces the operator watches, as a JSON list; empty: every namespace (rbac.clusterWide). */}}
{{- define "wasp.watchNamespaces" -}}
{{- if .Values.rbac.clusterWide -}}
{{- list | toJson -}}
{{- else if .Values.watchNamespaces -}}
{{- .Values.watchNamespaces | uniq | toJson -}}
{{- else -}}
{{- fail "watchNamespaces is empty: list the namespaces with WhatsAppSessions, or set rbac.clusterWide=true to watch every namespace" -}}
{{- end -}}
{{- end -}}

{{/* The metrics scraper's namespaces (default: the release's), as a JSON list. */}}
{{- define "wasp.scraperNamespaces" -}}
{{- .Values.metricsScraper.namespaces | default (list .Release.Namespace) | uniq | toJson -}}
{{- end -}}

{{/* The metrics scraper's pod labels as key=value,... (the operator's WASP_OPERATOR_SCRAPER_LABELS). */}}
{{- define "wasp.scraperLabels" -}}
{{- $pairs := list -}}
{{- range $key, $value := .Values.metricsScraper.podLabels -}}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- $pairs | sortAlpha | join "," -}}
{{- end -}}

{{/* A NetworkPolicy peer: the metrics scraper's pods in its namespaces. */}}
{{- define "wasp.scraperPeer" -}}
- namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values: {{ include "wasp.scraperNamespaces" . }}
  podSelector:
    {{- with .Values.metricsScraper.podLabels }}
    matchLabels:
      {{- toYaml . | nindent 6 }}
    {{- else }} {}
    {{- end }}
{{- end -}}

{{/* The Redis ports the operator reaches: networkPolicy.redisPorts, redis.url's, the trial Redis's. */}}
{{- define "wasp.redisPorts" -}}
{{- $ports := list -}}
{{- range .Values.networkPolicy.redisPorts }}{{ $ports = append $ports (int .) }}{{ end -}}
{{- if .Values.redis.url -}}
{{- $host := (urlParse .Values.redis.url).host -}}
{{- $port := 6379 -}}
{{- if regexMatch ":[0-9]+$" $host }}{{ $port = regexFind "[0-9]+$" $host | int }}{{ end -}}
{{- $ports = append $ports $port -}}
{{- end -}}
{{- if .Values.redis.inChart.enabled }}{{ $ports = append $ports 6379 }}{{ end -}}
{{- $ports | uniq | toJson -}}
{{- end -}}

{{/* The trial Redis's password: redis.inChart.password, else the one kept in its Secret, else a new one. */}}
{{- define "wasp.inChartRedisPassword" -}}
{{- $kept := lookup "v1" "Secret" .Release.Namespace "wasp-redis" -}}
{{- if .Values.redis.inChart.password -}}
{{- .Values.redis.inChart.password -}}
{{- else if and $kept $kept.data (hasKey $kept.data "password") -}}
{{- index $kept.data "password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}

{{/* Refuse contradictory settings, saying which keys clash. */}}
{{- define "wasp.validate" -}}
{{- $sources := list -}}
{{- if .Values.redis.url }}{{ $sources = append $sources "redis.url" }}{{ end -}}
{{- if .Values.redis.existingSecret }}{{ $sources = append $sources "redis.existingSecret" }}{{ end -}}
{{- if .Values.redis.inChart.enabled }}{{ $sources = append $sources "redis.inChart.enabled" }}{{ end -}}
{{- if gt (len $sources) 1 -}}
{{- fail (printf "set only one of redis.url, redis.existingSecret and redis.inChart.enabled (got %s)" (join ", " $sources)) -}}
{{- end -}}
{{- $_ := include "wasp.watchNamespaces" . -}}
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
