{{/* Names, labels and the shared pod pieces. */}}

{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gatehouse.fullname" -}}
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

{{/* "gatehouse.component" (dict "root" $ "component" "gateway") -> the name of a component */}}
{{- define "gatehouse.componentName" -}}
{{- printf "%s-%s" (include "gatehouse.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .model }}
gatehouse.io/model: {{ . }}
{{- end }}
{{- end -}}

{{- define "gatehouse.labels" -}}
{{ include "gatehouse.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: gatehouse
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "gatehouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "gatehouse.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "gatehouse.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Restricted pod security: the pod level. `uid` overrides the user for third-party images. */}}
{{- define "gatehouse.podSecurityContext" -}}
{{- $ctx := deepCopy .root.Values.podSecurityContext -}}
{{- if .uid -}}
{{- $_ := set $ctx "runAsUser" .uid -}}
{{- $_ := set $ctx "runAsGroup" .uid -}}
{{- $_ := set $ctx "fsGroup" .uid -}}
{{- end -}}
{{- toYaml $ctx -}}
{{- end -}}

{{- define "gatehouse.containerSecurityContext" -}}
{{- $ctx := deepCopy .root.Values.containerSecurityContext -}}
{{- if hasKey . "readOnlyRoot" -}}
{{- $_ := set $ctx "readOnlyRootFilesystem" .readOnlyRoot -}}
{{- end -}}
{{- toYaml $ctx -}}
{{- end -}}

{{/* GPU scheduling: the node labels and a toleration for each taint of gpuNodes, the same
     values the Karpenter NodePool puts on the nodes, so the two cannot drift apart. */}}
{{- define "gatehouse.gpuScheduling" -}}
nodeSelector:
  {{- toYaml .Values.gpuNodes.labels | nindent 2 }}
tolerations:
{{- range .Values.gpuNodes.taints }}
  - key: {{ .key }}
    operator: Equal
    value: {{ .value | quote }}
    effect: {{ .effect }}
{{- end }}
{{- end -}}

{{/* The config file the gateway reads: values.config plus what the chart owns. */}}
{{- define "gatehouse.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := default dict $cfg.server -}}
{{- $_ := set $server "host" "0.0.0.0" -}}
{{- $_ := set $server "port" (int .Values.gateway.port) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $store := default dict $cfg.store -}}
{{- $_ := set $store "migrate_on_start" (not .Values.migrations.enabled) -}}
{{- $_ := set $cfg "store" $store -}}
{{- $providers := default dict $cfg.providers -}}
{{- if .Values.vllm.enabled -}}
{{- range .Values.vllm.models -}}
{{- $url := printf "http://%s:%d/v1" (include "gatehouse.componentName" (dict "root" $ "component" (printf "vllm-%s" .name))) (int $.Values.vllm.port) -}}
{{- $auto := dict "type" "openai" "base_url" $url "connect_timeout" 3 "read_timeout" 600 -}}
{{- $_ := set $providers (printf "vllm-%s" .name) (merge (default dict (get $providers (printf "vllm-%s" .name))) $auto) -}}
{{- end -}}
{{- end -}}
{{- if .Values.ollama.enabled -}}
{{- $url := printf "http://%s:%d/v1" (include "gatehouse.componentName" (dict "root" . "component" "ollama")) (int .Values.ollama.port) -}}
{{- $_ := set $providers "ollama" (merge (default dict (get $providers "ollama")) (dict "type" "openai" "base_url" $url)) -}}
{{- end -}}
{{- $_ := set $cfg "providers" $providers -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* A resolved vLLM model entry: the per-model values over vllmDefaults. */}}
{{- define "gatehouse.vllmModel" -}}
{{- /* set, not mergeOverwrite: mergeOverwrite skips zero values (minReplicas: 0) */ -}}
{{- $m := deepCopy .root.Values.vllmDefaults -}}
{{- range $k, $v := .model -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $m $k)) -}}
{{- $sub := get $m $k -}}
{{- range $k2, $v2 := $v -}}
{{- $_ := set $sub $k2 $v2 -}}
{{- end -}}
{{- else -}}
{{- $_ := set $m $k $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $m -}}
{{- end -}}
