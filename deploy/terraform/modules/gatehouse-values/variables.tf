variable "image_repository" {
  type        = string
  description = "Gatehouse image repository (chart value image.repository)."
}

variable "image_tag" {
  type        = string
  description = "Gatehouse image tag (chart value image.tag)."
}

variable "replicas" {
  type        = number
  description = "Gateway replicas (chart value replicaCount). More than one needs store.redis_url for shared limits."
  default     = 1
}

variable "service_account_annotations" {
  type        = map(string)
  description = "Service account annotations (chart value serviceAccount.annotations): the IRSA role ARN, or {} with Pod Identity."
  default     = {}
}

variable "existing_secret" {
  type        = string
  description = "Kubernetes Secret the chart reads the gateway's environment from (chart value existingSecret): GATEHOUSE_ADMIN_KEY, GATEHOUSE_SECRET, GATEHOUSE_DATABASE_URL and GATEHOUSE_REDIS_URL when used."
  default     = "gatehouse-secrets"
}

variable "internal_load_balancer" {
  type        = bool
  description = "Expose the gateway through an internal NLB (AWS Load Balancer Controller annotations on a LoadBalancer Service); false: a ClusterIP Service (port-forward or your own ingress)."
  default     = true
}

variable "node_selector" {
  type        = map(string)
  description = "Node selector of the gateway pods (chart value nodeSelector)."
  default     = {}
}

variable "use_redis" {
  type        = bool
  description = "Set store.redis_url from GATEHOUSE_REDIS_URL (shared limits across replicas)."
  default     = false
}

variable "ollama" {
  type = object({
    base_url = string
    models   = list(string)
  })
  description = "An Ollama backend (OpenAI-compatible /v1 URL) and the models it serves; null: none."
  default     = null
}

variable "vllm_models" {
  type = list(object({
    name     = string
    provider = string
    base_url = string
  }))
  description = "One vLLM server per model: the model name clients use, a provider name and its /v1 base URL."
  default     = []
}

variable "bedrock_region" {
  type        = string
  description = "Region of the Bedrock provider; null: no Bedrock provider."
  default     = null
}

variable "bedrock_overflow_model_id" {
  type        = string
  description = "Bedrock model or inference-profile id every private model falls back to (needs bedrock_region); null: no overflow, the models stay private."
  default     = null
}

variable "claude_code_model" {
  type        = string
  description = "Model that Claude Code's own model ids (claude-*) are aliased to; null: the first model."
  default     = null
}
