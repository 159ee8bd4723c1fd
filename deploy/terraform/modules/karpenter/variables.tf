variable "cluster_name" {
  type        = string
  description = "EKS cluster Karpenter provisions nodes for."
}

variable "cluster_endpoint" {
  type        = string
  description = "Kubernetes API endpoint of the cluster (Helm value settings.clusterEndpoint)."
}

variable "node_security_group_id" {
  type        = string
  description = "Security group for Karpenter's nodes (the EKS cluster security group, so they reach the control plane, RDS and ElastiCache like managed nodes)."
}

variable "karpenter_version" {
  type        = string
  description = "Karpenter Helm chart version (oci://public.ecr.aws/karpenter/karpenter); the NodePool/EC2NodeClass manifests use the karpenter.sh/v1 API."
  default     = "1.14.0"
}

variable "namespace" {
  type        = string
  description = "Namespace of the Karpenter controller (its service account is karpenter)."
  default     = "kube-system"
}

variable "ami_alias" {
  type        = string
  description = "EC2NodeClass amiSelectorTerms alias. al2023@latest follows new EKS AMIs (the NVIDIA variant is chosen for GPU types); pin al2023@vYYYYMMDD in production."
  default     = "al2023@latest"
}

variable "gpu_instance_families" {
  type        = list(string)
  description = "EC2 families the GPU NodePool may launch (docs/runbooks/gpu-instances-and-cost.md)."
  default     = ["g6", "g6e", "g5"]
}

variable "gpu_capacity_types" {
  type        = list(string)
  description = "Capacity types for GPU nodes: [\"spot\", \"on-demand\"] lets Karpenter prefer spot and fall back."
  default     = ["spot", "on-demand"]
}

variable "gpu_limit" {
  type        = number
  description = "Most GPUs the GPU NodePool may hold at once (a cost ceiling)."
  default     = 4
}

variable "gpu_disk_size_gib" {
  type        = number
  description = "Root volume of GPU nodes (inference images are large)."
  default     = 200
}

variable "gpu_consolidate_after" {
  type        = string
  description = "How long an empty GPU node waits before Karpenter removes it (scale to zero)."
  default     = "10m"
}

variable "general_nodepool" {
  type        = bool
  description = "Also render a CPU NodePool (gateway, KEDA, monitoring) so no general managed node group is needed."
  default     = true
}

variable "general_cpu_limit" {
  type        = number
  description = "Most vCPUs the general NodePool may hold."
  default     = 64
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every AWS resource here and to the EC2 instances Karpenter launches."
  default     = {}
}
