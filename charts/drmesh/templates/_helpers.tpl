{{/* Names and labels shared by every template. */}}

{{- define "drmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: "drmesh" for a release named drmesh. */}}
{{- define "drmesh.fullname" -}}
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

{{- define "drmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "drmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Deliberately NOT app.kubernetes.io/managed-by=drmesh: that label marks the
     operator's children, and the chart's objects are Helm's. */}}
{{- define "drmesh.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "drmesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: drmesh
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "drmesh.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "drmesh.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's username as the API server sees it. */}}
{{- define "drmesh.operatorUsername" -}}
{{- default (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "drmesh.serviceAccountName" .)) .Values.admissionPolicies.operatorUsername }}
{{- end }}

{{- define "drmesh.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A CEL list literal of strings: ["a", "b"]. */}}
{{- define "drmesh.celList" -}}
[{{- range $i, $v := . }}{{ if $i }}, {{ end }}{{ $v | toJson }}{{- end }}]
{{- end }}

{{/* The bindings' matchResources.namespaceSelector, when one is configured. */}}
{{- define "drmesh.bindingMatch" -}}
{{- with .Values.admissionPolicies.namespaceSelector }}
matchResources:
  namespaceSelector:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end }}

{{/* The namespaces whose drmesh.io/clearance makes them classified (a matchConstraints
     namespaceSelector). */}}
{{- define "drmesh.classifiedNamespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: drmesh.io/clearance
      operator: In
      values: {{ toJson .Values.admissionPolicies.classifiedNamespaces.clearances }}
{{- end }}

{{/* The request namespace's clearance, read again from the namespace itself (the
     namespaceSelector is the fast path); a missing label is Public. */}}
{{- define "drmesh.clearanceVariable" -}}
- name: clearance
  expression: >-
    namespaceObject != null && has(namespaceObject.metadata.labels) &&
    'drmesh.io/clearance' in namespaceObject.metadata.labels ?
    namespaceObject.metadata.labels['drmesh.io/clearance'] : 'Public'
{{- end }}
