{{/* Name of the chart, or nameOverride. */}}
{{- define "palisade.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified name: release-chart, unless the release name already holds the chart's. */}}
{{- define "palisade.fullname" -}}
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

{{- define "palisade.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "palisade.selectorLabels" -}}
app.kubernetes.io/name: {{ include "palisade.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "palisade.labels" -}}
helm.sh/chart: {{ include "palisade.chart" . }}
{{ include "palisade.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "palisade.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "palisade.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
palisade.yaml as the pods read it: `config` from values, with `listen` set to the container's
port and `admin` built from `admin`. Fails when a collector reads its key from an environment
variable that no Secret provides, since that collector would answer 401 to every call.
*/}}
{{- define "palisade.config" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- $_ := set $config "listen" (printf "0.0.0.0:%d" (int .Values.service.targetPort)) }}
{{- if .Values.admin.enabled }}
{{- $_ := set $config "admin" (dict "listen" (printf "0.0.0.0:%d" (int .Values.admin.port)) "keys" (default list .Values.admin.keys)) }}
{{- else }}
{{- $_ := unset $config "admin" }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- $state := default dict $config.state }}
{{- $redis := default dict $state.redis }}
{{- if not $redis.url }}
{{- $_ := set $redis "url_env" "PALISADE_REDIS_URL" }}
{{- end }}
{{- $_ := set $state "redis" $redis }}
{{- $_ := set $config "state" $state }}
{{- end }}
{{- if .Values.postgresql.enabled }}
{{- $storage := default dict $config.storage }}
{{- $pg := default dict $storage.postgres }}
{{- if not $pg.url }}
{{- $_ := set $pg "url_env" "PALISADE_DATABASE_URL" }}
{{- end }}
{{- $_ := set $storage "postgres" $pg }}
{{- $_ := set $config "storage" $storage }}
{{- end }}
{{- $provided := list }}
{{- range .Values.secrets.env }}
{{- $provided = append $provided .name }}
{{- end }}
{{- range (default list $config.collectors) }}
{{- if and .api_key_env (not $.Values.secrets.existingSecret) (not (has .api_key_env $provided)) }}
{{- fail (printf "collector %q reads its key from %s, but neither secrets.existingSecret nor secrets.env provides it" .name .api_key_env) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "palisade.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
