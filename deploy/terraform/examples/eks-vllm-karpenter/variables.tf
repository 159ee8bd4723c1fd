variable "name" {
  type        = string
  description = "Name of the deployment: the EKS cluster, the VPC and the prefix of everything else."
  default     = "gatehouse"
}

variable "region" {
  type        = string
  description = "AWS region."
  default     = "us-west-2"
}

variable "az_count" {
  type        = number
  description = "Availability zones to use (3 for production, 2 is the minimum)."
  default     = 3
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all AZs (non-prod) instead of one per AZ."
  default     = true
}

variable "public_access_cidrs" {
  type        = list(string)
  description = "Your egress CIDRs allowed to reach the Kubernetes API endpoint."
}

variable "admin_principal_arns" {
  type        = list(string)
  description = "Extra IAM roles/users given cluster-admin (the identity running terraform already has it)."
  default     = []
}

variable "gpu_instance_families" {
  type        = list(string)
  description = "GPU families Karpenter may launch (docs/runbooks/gpu-instances-and-cost.md)."
  default     = ["g6", "g6e", "g5"]
}

variable "gpu_capacity_types" {
  type        = list(string)
  description = "Karpenter capacity types for GPU nodes; [\"spot\", \"on-demand\"] prefers spot."
  default     = ["spot", "on-demand"]
}

variable "gpu_limit" {
  type        = number
  description = "Most GPUs Karpenter may run at once (cost ceiling)."
  default     = 4
}

variable "vllm_models" {
  type = list(object({
    name          = string
    model         = string
    gpus          = optional(number, 1)
    max_model_len = optional(number, 32768)
    max_replicas  = optional(number, 2)
    cache_gib     = optional(number, 100)
    # Memory of one GPU the model needs (weights + KV cache): Karpenter picks an instance type
    # whose GPUs have more than this. EC2 reports a little under the nominal size: use 20 for
    # 24 GB cards (A10G, L4), 40 for 48 GB (L40S), 75 for 80 GB (A100, H100).
    min_gpu_memory_gib = optional(number, 20)
  }))
  description = "One vLLM deployment per model: name is what clients ask for, model the Hugging Face id vLLM loads, gpus the tensor-parallel size, min_gpu_memory_gib the per-GPU memory it needs."
  default = [
    { name = "qwen3-coder:30b", model = "Qwen/Qwen3-Coder-30B-A3B-Instruct-FP8", min_gpu_memory_gib = 40 },
  ]
}

variable "vllm_image" {
  type        = string
  description = "vLLM OpenAI-compatible server image (pin a tested release)."
  default     = "vllm/vllm-openai:v0.11.0"
}

variable "prometheus_url" {
  type        = string
  description = "Prometheus the KEDA ScaledObjects query for the gateway's request rate."
  default     = "http://prometheus-operated.monitoring.svc.cluster.local:9090"
}

variable "bedrock_overflow_model_id" {
  type        = string
  description = "Bedrock model (or inference profile) id each vLLM model falls back to while its GPUs are at zero or down. Null: no overflow."
  default     = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
}

variable "bedrock_model_arns" {
  type        = list(string)
  description = "Bedrock ARNs the gateway may invoke: the overflow inference profile and the foundation models behind it."
  default = [
    "arn:aws:bedrock:us-west-2:*:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",
  ]
}

variable "rds_instance_class" {
  type        = string
  description = "RDS instance class."
  default     = "db.t4g.medium"
}

variable "rds_multi_az" {
  type        = bool
  description = "Multi-AZ RDS (production)."
  default     = false
}

variable "redis_nodes" {
  type        = number
  description = "ElastiCache nodes (1 non-prod, 2+ with failover)."
  default     = 1
}

variable "enable_bastion" {
  type        = bool
  description = "Create the SSM-only bastion (psql/redis-cli, port forwarding)."
  default     = true
}

variable "gateway_replicas" {
  type        = number
  description = "Gateway replicas (stateless: limits in Redis, keys and ledger in PostgreSQL)."
  default     = 2
}

variable "image_repository" {
  type        = string
  description = "Container image repository of Gatehouse (Helm value image.repository)."
  default     = "ghcr.io/gatehouse/gatehouse"
}

variable "image_tag" {
  type        = string
  description = "Gatehouse image tag (Helm value image.tag)."
  default     = "0.1.0"
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the RDS instance from deletion (turn off before terraform destroy)."
  default     = true
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for every resource."
  default     = {}
}
