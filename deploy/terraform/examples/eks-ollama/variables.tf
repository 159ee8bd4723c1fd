variable "name" {
  type        = string
  description = "Name of the deployment: the EKS cluster, the VPC and the prefix of everything else."
  default     = "gatehouse-ollama"
}

variable "region" {
  type        = string
  description = "AWS region (one with the GPU instance type available and quota granted)."
  default     = "us-west-2"
}

variable "public_access_cidrs" {
  type        = list(string)
  description = "Your egress CIDRs allowed to reach the Kubernetes API endpoint (e.g. [\"203.0.113.10/32\"])."
}

variable "admin_principal_arns" {
  type        = list(string)
  description = "Extra IAM roles/users given cluster-admin (the identity running terraform already has it)."
  default     = []
}

variable "gpu_instance_type" {
  type        = string
  description = "GPU instance type of the single Ollama node (docs/runbooks/gpu-instances-and-cost.md): g6.xlarge (L4 24 GB) fits 7-14B models, g6e.xlarge (L40S 48 GB) fits ~32B at 4-bit."
  default     = "g6.xlarge"
}

variable "gpu_capacity_type" {
  type        = string
  description = "ON_DEMAND or SPOT for the GPU node (spot is ~60% cheaper and can be reclaimed with 2 minutes' notice)."
  default     = "SPOT"
}

variable "gpu_node_count" {
  type        = number
  description = "GPU nodes wanted: 1 to serve, 0 to stop paying for the GPU (the model volume stays)."
  default     = 1

  validation {
    condition     = var.gpu_node_count >= 0 && var.gpu_node_count <= 1
    error_message = "This example runs zero or one GPU node."
  }
}

variable "ollama_model" {
  type        = string
  description = "The Ollama model the gateway serves (pulled onto the volume after install)."
  default     = "qwen3-coder:30b"
}

variable "bedrock_model_arns" {
  type        = list(string)
  description = "Optional Bedrock model ARNs the gateway may also call (empty: no Bedrock access)."
  default     = []
}

variable "image_repository" {
  type        = string
  description = "Container image repository of Gatehouse (Helm value image.repository), e.g. an ECR repository you push to."
  default     = "ghcr.io/gatehouse/gatehouse"
}

variable "image_tag" {
  type        = string
  description = "Gatehouse image tag (Helm value image.tag); pin a release."
  default     = "0.1.0"
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the RDS instance from deletion (turn off before terraform destroy)."
  default     = false
}

variable "tags" {
  type        = map(string)
  description = "Extra tags for every resource (cost centre, owner)."
  default     = {}
}
