{{/* The chart's name. */}}
{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name (the primary's StatefulSet and Service). Truncated to leave room for
the "-replica-headless" suffix within the 63 characters of a DNS label.
*/}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sluice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The primary's client Service URL inside the cluster. */}}
{{- define "sluice.primaryURL" -}}
{{- $scheme := ternary "https" "http" (eq (upper .Values.probes.scheme) "HTTPS") }}
{{- printf "%s://%s.%s.svc.%s:%v" $scheme (include "sluice.fullname" .) .Release.Namespace .Values.clusterDomain .Values.service.httpPort }}
{{- end }}

{{/* Whether the servers authenticate requests: tokens or JWT keys are configured. */}}
{{- define "sluice.authEnabled" -}}
{{- $jwt := false }}
{{- range $k, $v := .Values.config }}
{{- if and (or (hasPrefix "SLUICE_AUTH_JWT_" $k) (hasPrefix "SLUICE_AUTH_BEARER_TOKEN" $k) (hasPrefix "SLUICE_BEARER_TOKEN" $k)) $v }}
{{- $jwt = true }}
{{- end }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if or (hasPrefix "SLUICE_AUTH_JWT_" .name) (hasPrefix "SLUICE_AUTH_BEARER_TOKEN" .name) (hasPrefix "SLUICE_BEARER_TOKEN" .name) }}
{{- $jwt = true }}
{{- end }}
{{- end }}
{{- if or .Values.auth.existingSecret .Values.auth.tokens $jwt }}true{{ end }}
{{- end }}

{{/* The Secret holding the bearer tokens file. */}}
{{- define "sluice.authSecretName" -}}
{{- default (printf "%s-auth" (include "sluice.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "sluice.authSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}tokens.json{{ end }}
{{- end }}

{{/* The Secret holding the replication token. */}}
{{- define "sluice.replicationSecretName" -}}
{{- default (printf "%s-replication" (include "sluice.fullname" .)) .Values.replication.existingSecret }}
{{- end }}

{{- define "sluice.replicationSecretKey" -}}
{{- if .Values.replication.existingSecret }}{{ .Values.replication.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{/*
Checks the values before anything is rendered: authentication or an explicit opt-out, hashed
tokens only, settings the chart owns left alone.
*/}}
{{- define "sluice.validate" -}}
{{- if and (not (include "sluice.authEnabled" .)) (not .Values.auth.unauthenticated) }}
{{- fail "sluice: the server listens on 0.0.0.0 in the pod and refuses to start without authentication: set auth.existingSecret or auth.tokens (hashed, `sluice token hash`), configure JWT keys, or set auth.unauthenticated=true to accept an open server" }}
{{- end }}
{{- range $actor, $entry := .Values.auth.tokens }}
{{- $token := "" }}
{{- if kindIs "string" $entry }}
{{- $token = $entry }}
{{- else if kindIs "map" $entry }}
{{- $token = default "" $entry.token }}
{{- else }}
{{- fail (printf "sluice: auth.tokens.%s must be \"sha256:<hex>\" or {token: \"sha256:<hex>\", roles: {...}}" $actor) }}
{{- end }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $token) }}
{{- fail (printf "sluice: auth.tokens.%s: only hashed tokens (\"sha256:\" and 64 hex digits, from `sluice token hash`) may be given in values; put clear tokens in a Secret (auth.existingSecret)" $actor) }}
{{- end }}
{{- end }}
{{- range $k := list "SLUICE_HTTP_ADDR" "SLUICE_WIRE_ADDR" "SLUICE_DATA_DIR" "SLUICE_ROLE" "SLUICE_UNAUTHENTICATED" "SLUICE_AUTH_BEARER_TOKENS_FILE" "SLUICE_BEARER_TOKENS_FILE" "SLUICE_REPLICATION_TOKEN" "SLUICE_AUTH_PUBLIC_METRICS" "SLUICE_MONITORING_SELF_SCRAPE_INTERVAL_MS" "SLUICE_MONITORING_RETENTION_MS" "SLUICE_MONITORING_REPLICATE" }}
{{- if hasKey $.Values.config $k }}
{{- fail (printf "sluice: %s is set by the chart (auth.*, monitoring.* or fixed); remove it from config" $k) }}
{{- end }}
{{- end }}
{{- $scrape := int64 .Values.monitoring.selfScrapeIntervalMs }}
{{- if or (lt $scrape 0) (and (gt $scrape 0) (lt $scrape 1000)) }}
{{- fail (printf "sluice: monitoring.selfScrapeIntervalMs must be 0 (off) or at least 1000, not %v" .Values.monitoring.selfScrapeIntervalMs) }}
{{- end }}
{{- if lt (int64 .Values.monitoring.retentionMs) 1 }}
{{- fail "sluice: monitoring.retentionMs must be at least 1" }}
{{- end }}
{{- if and .Values.replicas.enabled (lt (int .Values.replicas.count) 1) }}
{{- fail "sluice: replicas.count must be at least 1 when replicas.enabled" }}
{{- end }}
{{- end }}

{{/* Environment shared by the primary and the replicas. */}}
{{- define "sluice.commonEnv" -}}
{{- if or .Values.auth.existingSecret .Values.auth.tokens }}
- name: SLUICE_AUTH_BEARER_TOKENS_FILE
  value: /etc/sluice/auth/tokens.json
{{- end }}
{{- if and .Values.replicas.enabled (include "sluice.authEnabled" .) }}
# The replication token, accepted as an admin token (actor `default`).
- name: SLUICE_AUTH_BEARER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "sluice.replicationSecretName" . }}
      key: {{ include "sluice.replicationSecretKey" . }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes shared by the primary and the replicas. */}}
{{- define "sluice.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if or .Values.auth.existingSecret .Values.auth.tokens }}
- name: auth
  secret:
    secretName: {{ include "sluice.authSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "sluice.authSecretKey" . }}
        path: tokens.json
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sluice.volumeMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- if or .Values.auth.existingSecret .Values.auth.tokens }}
- name: auth
  mountPath: /etc/sluice/auth
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Probes on /readyz (readiness) and /healthz (startup, liveness). */}}
{{- define "sluice.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
    scheme: {{ upper .Values.probes.scheme }}
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
    scheme: {{ upper .Values.probes.scheme }}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
    scheme: {{ upper .Values.probes.scheme }}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
{{- end }}

{{/* The checksums that roll the pods when their configuration changes. */}}
{{- define "sluice.checksums" -}}
checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/auth: {{ toJson .Values.auth | sha256sum }}
{{- end }}
