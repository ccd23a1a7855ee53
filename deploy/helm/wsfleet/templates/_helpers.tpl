{{/*
Names, labels and the values the chart computes. Ports are the server's defaults
(server.port 8000, server.internal_port 9000); tests/deploy checks them against
wsfleet.settings.
*/}}

{{- define "wsfleet.publicPort" -}}8000{{- end -}}
{{- define "wsfleet.internalPort" -}}9000{{- end -}}
{{- define "wsfleet.configDir" -}}/etc/wsfleet{{- end -}}

{{- define "wsfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wsfleet.fullname" -}}
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

{{/* The internal Service's name (API, metrics, health). */}}
{{- define "wsfleet.internalName" -}}
{{- printf "%s-internal" (include "wsfleet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wsfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "wsfleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "wsfleet.secretName" -}}
{{- default (include "wsfleet.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "wsfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wsfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "wsfleet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "wsfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wsfleet
{{- end -}}

{{- define "wsfleet.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Pods: 1 with the memory broker, else replicaCount. */}}
{{- define "wsfleet.replicas" -}}
{{- if eq .Values.broker.mode "memory" -}}1{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}

{{/*
The grace period, never set by hand (docs/topics/lifecycle.md):
preStop sleep (drain.readinessDelay) + drain.timeout + a 5 s margin for the
process's exit and the kubelet's own latency.
*/}}
{{- define "wsfleet.terminationGracePeriodSeconds" -}}
{{- add (int .Values.drain.readinessDelay) (int .Values.drain.timeout) 5 -}}
{{- end -}}

{{/*
The server's configuration file: .Values.config with what the chart owns merged in.
The chart owns the listeners (ports equal to the Services' and the probes') and the
drain (the grace period is computed from it); log_format is json unless set.
*/}}
{{- define "wsfleet.serverConfig" -}}
{{- $config := deepCopy (default dict .Values.config) -}}
{{- $server := deepCopy (default dict (get $config "server")) -}}
{{- $_ := set $server "host" "0.0.0.0" -}}
{{- $_ := set $server "port" (int (include "wsfleet.publicPort" .)) -}}
{{- $_ := set $server "internal_host" "0.0.0.0" -}}
{{- $_ := set $server "internal_port" (int (include "wsfleet.internalPort" .)) -}}
{{- if not (hasKey $server "log_format") -}}
{{- $_ := set $server "log_format" "json" -}}
{{- end -}}
{{- $_ := set $config "server" $server -}}
{{- $drain := dict "readiness_delay" .Values.drain.readinessDelay "window" .Values.drain.window "timeout" .Values.drain.timeout -}}
{{- $_ := set $config "drain" $drain -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Every rule across values; `fail` with a message naming the value to change. Included
once, from the Deployment, so that any render (install, template, lint) checks them.
*/}}
{{- define "wsfleet.validate" -}}
{{- $d := .Values.drain -}}
{{- if le (int $d.timeout) (add (int $d.readinessDelay) (int $d.window)) -}}
{{- fail (printf "drain.timeout (%v) must exceed drain.readinessDelay + drain.window (%v + %v): the server refuses it, and the grace period is computed from it" $d.timeout $d.readinessDelay $d.window) -}}
{{- end -}}
{{- $mode := .Values.broker.mode -}}
{{- $url := .Values.broker.url -}}
{{- if or (eq $mode "rabbitmq") (hasPrefix "amqp://" $url) (hasPrefix "amqps://" $url) -}}
{{- fail "broker: RabbitMQ (amqp://, amqps://) is not implemented by this wsfleet version, whose server refuses the URL; use broker.mode redis, redis-sentinel or redis-cluster" -}}
{{- end -}}
{{- if eq $mode "memory" -}}
{{- if ne .Values.autoscaling.type "none" -}}
{{- fail "autoscaling needs a shared broker: with broker.mode memory every pod is a separate server (set broker.mode to redis, redis-sentinel or redis-cluster, or autoscaling.type none)" -}}
{{- end -}}
{{- if $url -}}
{{- fail "broker.url is set but broker.mode is memory: set broker.mode to the URL's kind (redis, redis-sentinel, redis-cluster)" -}}
{{- end -}}
{{- else if not .Values.secrets.existingSecret -}}
{{- $schemes := dict "redis" (list "redis://" "rediss://") "redis-sentinel" (list "redis+sentinel://") "redis-cluster" (list "redis+cluster://") -}}
{{- $allowed := get $schemes $mode | default list -}}
{{- if not $url -}}
{{- fail (printf "broker.mode %s needs broker.url (%s...), or secrets.existingSecret holding it" $mode (join ", " $allowed)) -}}
{{- end -}}
{{- $ok := false -}}
{{- range $allowed -}}
{{- if hasPrefix . $url -}}{{- $ok = true -}}{{- end -}}
{{- end -}}
{{- if not $ok -}}
{{- fail (printf "broker.url must start with %s for broker.mode %s" (join " or " $allowed) $mode) -}}
{{- end -}}
{{- end -}}
{{- $config := default dict .Values.config -}}
{{- if hasKey $config "drain" -}}
{{- fail "config.drain: set the drain with the chart's drain.readinessDelay, drain.window and drain.timeout (the grace period and the preStop hook are computed from them)" -}}
{{- end -}}
{{- $server := default dict (get $config "server") -}}
{{- range list "host" "port" "internal_host" "internal_port" -}}
{{- if hasKey $server . -}}
{{- fail (printf "config.server.%s is set by the chart (the Services, probes and NetworkPolicy use the server's default ports)" .) -}}
{{- end -}}
{{- end -}}
{{- if hasKey (default dict (get $config "api")) "key" -}}
{{- fail "config.api.key: put the API key in secrets.apiKey (or secrets.existingSecret), never in the ConfigMap" -}}
{{- end -}}
{{- if hasKey (default dict (get $config "auth")) "token_hmac_secret" -}}
{{- fail "config.auth.token_hmac_secret: put it in secrets.tokenHmacSecret (or secrets.existingSecret), never in the ConfigMap" -}}
{{- end -}}
{{- if hasKey (default dict (get $config "broker")) "url" -}}
{{- fail "config.broker.url: set broker.mode and broker.url (kept in the Secret), not config.broker.url" -}}
{{- end -}}
{{- if .Values.networkPolicy.enabled -}}
{{- range .Values.networkPolicy.internalFrom -}}
{{- if has . $.Values.networkPolicy.publicFrom -}}
{{- fail "networkPolicy.internalFrom must not list a peer of networkPolicy.publicFrom: the ingress must never reach the internal port" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The secrets the pods read, as a list of [environment variable, key in the Secret]:
with the chart's Secret, those whose value is set; with secrets.existingSecret, all
of them (optional, so a key you leave out means the server's default).
*/}}
{{- define "wsfleet.secretEntries" -}}
{{- $s := .Values.secrets -}}
{{- $entries := list -}}
{{- if or $s.existingSecret $s.apiKey -}}
{{- $entries = append $entries (list "WSFLEET_API_KEY" $s.keys.apiKey) -}}
{{- end -}}
{{- if or $s.existingSecret $s.tokenHmacSecret -}}
{{- $entries = append $entries (list "WSFLEET_AUTH_TOKEN_HMAC_SECRET" $s.keys.tokenHmacSecret) -}}
{{- end -}}
{{- if ne .Values.broker.mode "memory" -}}
{{- $entries = append $entries (list "WSFLEET_BROKER_URL" $s.keys.brokerUrl) -}}
{{- end -}}
{{- toJson $entries -}}
{{- end -}}

{{/* The HPA behavior both autoscalers use: scale up quickly, down slowly (each pod scaled away drains its clients onto the others). */}}
{{- define "wsfleet.hpaBehavior" -}}
{{- $a := .Values.autoscaling -}}
scaleDown:
  stabilizationWindowSeconds: {{ $a.scaleDown.stabilizationWindowSeconds }}
  selectPolicy: Min
  policies:
    - type: Pods
      value: {{ $a.scaleDown.podsPerPeriod }}
      periodSeconds: {{ $a.scaleDown.periodSeconds }}
scaleUp:
  stabilizationWindowSeconds: {{ $a.scaleUp.stabilizationWindowSeconds }}
  selectPolicy: Max
  policies:
    - type: Pods
      value: {{ $a.scaleUp.podsPerPeriod }}
      periodSeconds: {{ $a.scaleUp.periodSeconds }}
{{- end -}}

{{/* The PromQL query of the KEDA trigger: the fleet's open client connections. */}}
{{- define "wsfleet.kedaQuery" -}}
{{- if .Values.autoscaling.keda.query -}}
{{- .Values.autoscaling.keda.query -}}
{{- else -}}
{{- printf "sum(wsfleet_connections{namespace=%q,service=%q})" .Release.Namespace (include "wsfleet.internalName" .) -}}
{{- end -}}
{{- end -}}
