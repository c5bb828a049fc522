{{/*
Names, labels and the derived settings every template shares. Cross-field checks live in
"stepcache.validate" so a bad combination fails the whole render with one clear message.
*/}}

{{- define "stepcache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stepcache.fullname" -}}
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

{{- define "stepcache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stepcache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stepcache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The webhook pods only (not the migration Job's): Deployment, Service, PDB and anti-affinity select these. */}}
{{- define "stepcache.webhookSelectorLabels" -}}
{{ include "stepcache.selectorLabels" . }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "stepcache.labels" -}}
helm.sh/chart: {{ include "stepcache.chart" . }}
{{ include "stepcache.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stepcache
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "stepcache.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stepcache.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: repository:tag, with @digest appended when a digest pins it. */}}
{{- define "stepcache.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Replicas: explicit replicaCount, else 2 for postgres and 1 for sqlite. */}}
{{- define "stepcache.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount }}
{{- if eq .Values.store.type "postgres" }}2{{ else }}1{{ end }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/* Namespaces the webhook never sees: the release namespace, kube-system, kube-public, then the admin's list. */}}
{{- define "stepcache.excludedNamespaces" -}}
{{- $out := list .Release.Namespace "kube-system" "kube-public" }}
{{- range .Values.webhook.namespaces.exclude }}
{{- $out = append $out . }}
{{- end }}
{{- toJson ($out | uniq) }}
{{- end }}

{{/* Server deadline: one second under the API server's timeout (500ms when the timeout is 1s). */}}
{{- define "stepcache.requestDeadline" -}}
{{- $t := int .Values.webhook.timeoutSeconds }}
{{- if gt $t 1 }}{{ sub $t 1 }}s{{ else }}500ms{{ end }}
{{- end }}

{{- define "stepcache.tlsSecretName" -}}
{{- if eq .Values.certs.mode "existingSecret" }}
{{- .Values.certs.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "stepcache.fullname" .) }}
{{- end }}
{{- end }}

{{/* Base64 caBundle from a value that is PEM or already base64 of PEM. */}}
{{- define "stepcache.b64pem" -}}
{{- if contains "-----BEGIN" . }}{{ b64enc . }}{{ else }}{{ . | nospace }}{{ end }}
{{- end }}

{{- define "stepcache.signingKeySecretName" -}}
{{- default (printf "%s-signing-key" (include "stepcache.fullname" .)) .Values.signingKey.existingSecret }}
{{- end }}

{{- define "stepcache.postgresSecretName" -}}
{{- default (printf "%s-postgres" (include "stepcache.fullname" .)) .Values.store.postgres.existingSecret }}
{{- end }}

{{- define "stepcache.pvcName" -}}
{{- default (printf "%s-data" (include "stepcache.fullname" .)) .Values.store.sqlite.existingClaim }}
{{- end }}

{{/* Value of STEPCACHE_DATABASE_URL as an EnvVar (value for sqlite, secretKeyRef for postgres). */}}
{{- define "stepcache.databaseUrlEnv" -}}
- name: STEPCACHE_DATABASE_URL
{{- if eq .Values.store.type "postgres" }}
  valueFrom:
    secretKeyRef:
      name: {{ include "stepcache.postgresSecretName" . }}
      key: {{ .Values.store.postgres.key }}
{{- else }}
  value: sqlite:///var/lib/stepcache/stepcache.db
{{- end }}
{{- end }}

{{/*
Cross-field checks. The schema already rejects wrong types and enum values; these repeat the
enum checks (for --skip-schema-validation) and cover what a schema cannot say clearly.
*/}}
{{- define "stepcache.validate" -}}
{{- $v := .Values }}
{{- if not (or $v.argoController.users $v.argoController.groups) }}
{{- fail "argoController.users and argoController.groups are both empty: stepcache would decide no pod. Name the Argo controller's service account, e.g. system:serviceaccount:argo:argo" }}
{{- end }}
{{- $modes := list "certManager" "existingSecret" "provided" }}
{{- if not (has $v.certs.mode $modes) }}
{{- fail (printf "certs.mode %q is not supported: use certManager (needs cert-manager), existingSecret (set certs.existingSecret.name and certs.caBundle) or provided (set certs.provided.cert, .key and .caBundle)" (toString $v.certs.mode)) }}
{{- end }}
{{- if eq $v.certs.mode "existingSecret" }}
{{- if not $v.certs.existingSecret.name }}
{{- fail "certs.mode=existingSecret needs certs.existingSecret.name: the name of a kubernetes.io/tls Secret (keys tls.crt, tls.key) in the release namespace" }}
{{- end }}
{{- if not $v.certs.caBundle }}
{{- fail "certs.mode=existingSecret needs certs.caBundle: the CA (PEM or base64 of PEM) that signed the certificate in certs.existingSecret.name" }}
{{- end }}
{{- end }}
{{- if eq $v.certs.mode "provided" }}
{{- if or (not $v.certs.provided.cert) (not $v.certs.provided.key) (not $v.certs.provided.caBundle) }}
{{- fail "certs.mode=provided needs certs.provided.cert, certs.provided.key and certs.provided.caBundle, e.g. `stepcache certs --out certs --dns <fullname>.<namespace>.svc` then --set-file certs.provided.cert=certs/tls.crt,certs.provided.key=certs/tls.key,certs.provided.caBundle=certs/ca.crt" }}
{{- end }}
{{- if not (and (contains "-----BEGIN" $v.certs.provided.cert) (contains "-----BEGIN" $v.certs.provided.key)) }}
{{- fail "certs.provided.cert and certs.provided.key must be PEM (text starting with -----BEGIN); pass the files with --set-file" }}
{{- end }}
{{- end }}
{{- if not (has $v.store.type (list "sqlite" "postgres")) }}
{{- fail (printf "store.type %q is not supported: use sqlite or postgres" (toString $v.store.type)) }}
{{- end }}
{{- $replicas := int (include "stepcache.replicas" .) }}
{{- if and (eq $v.store.type "sqlite") (gt $replicas 1) }}
{{- fail (printf "store.type=sqlite supports exactly 1 replica (replicaCount=%d): the cache is one SQLite file on a ReadWriteOnce volume that a second pod cannot open. Use store.type=postgres to run several replicas, or leave replicaCount empty" $replicas) }}
{{- end }}
{{- if eq $v.store.type "postgres" }}
{{- if not (or $v.store.postgres.url $v.store.postgres.existingSecret) }}
{{- fail "store.type=postgres needs store.postgres.existingSecret (+ store.postgres.key) or store.postgres.url" }}
{{- end }}
{{- end }}
{{- if and $v.store.migrationJob.enabled (ne $v.store.type "postgres") }}
{{- fail "store.migrationJob.enabled needs store.type=postgres: a Job cannot share the sqlite ReadWriteOnce volume with the running pod, and the server migrates sqlite on start" }}
{{- end }}
{{- if not (has $v.webhook.failurePolicy (list "Ignore" "Fail")) }}
{{- fail (printf "webhook.failurePolicy %q is not valid: use Ignore (an outage only disables caching) or Fail" (toString $v.webhook.failurePolicy)) }}
{{- end }}
{{- $t := int $v.webhook.timeoutSeconds }}
{{- if or (lt $t 1) (gt $t 30) }}
{{- fail (printf "webhook.timeoutSeconds must be between 1 and 30 (got %v)" $v.webhook.timeoutSeconds) }}
{{- end }}
{{- range $v.webhook.namespaces.include }}
{{- if or (eq . $.Release.Namespace) (eq . "kube-system") (eq . "kube-public") }}
{{- fail (printf "webhook.namespaces.include must not list %q: the release namespace, kube-system and kube-public are always excluded" .) }}
{{- end }}
{{- end }}
{{- if and $v.signingKey.value (lt (len $v.signingKey.value) 16) }}
{{- fail "signingKey.value must be at least 16 characters (or empty to generate one)" }}
{{- end }}
{{- if and $v.metrics.serviceMonitor.enabled (not $v.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true" }}
{{- end }}
{{- if and $v.metrics.enabled (eq (int $v.metrics.port) (int $v.server.port)) }}
{{- fail "metrics.port and server.port must differ" }}
{{- end }}
{{- end }}
