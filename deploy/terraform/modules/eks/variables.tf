variable "cluster_name" {
  type        = string
  description = "Name of the EKS cluster."
}

variable "kubernetes_version" {
  type        = string
  description = "Kubernetes minor version of the control plane and the managed node groups, e.g. \"1.33\". Upgrade one minor at a time (docs/runbooks/upgrade.md)."
  default     = "1.33"
}

variable "vpc_id" {
  type        = string
  description = "VPC the cluster runs in."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private subnet IDs for the control plane ENIs and the nodes (at least two AZs)."
}

variable "endpoint_public_access" {
  type        = bool
  description = "Expose the Kubernetes API endpoint on the internet (limited to public_access_cidrs). False: reachable only from the VPC (bastion, VPN)."
  default     = true
}

variable "public_access_cidrs" {
  type        = list(string)
  description = "CIDRs allowed to reach the public API endpoint (your office or VPN egress). Required when endpoint_public_access is true; 0.0.0.0/0 is refused."
  default     = []

  validation {
    condition     = !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "Do not open the Kubernetes API to 0.0.0.0/0; list your egress CIDRs or set endpoint_public_access = false."
  }
}

variable "admin_principal_arns" {
  type        = list(string)
  description = "IAM role/user ARNs given cluster-admin through EKS access entries (the identity running terraform gets it through bootstrap_cluster_creator_admin_permissions)."
  default     = []
}

variable "cluster_log_types" {
  type        = list(string)
  description = "Control plane log types sent to CloudWatch Logs."
  default     = ["api", "audit", "authenticator"]
}

variable "log_retention_days" {
  type        = number
  description = "Days to keep control plane logs."
  default     = 30
}

variable "addon_versions" {
  type        = map(string)
  description = "Pinned add-on versions by add-on name (vpc-cni, coredns, kube-proxy, eks-pod-identity-agent, aws-ebs-csi-driver). A missing name uses EKS's default for the cluster version; pin them in production (aws eks describe-addon-versions)."
  default     = {}
}

variable "node_imds_hop_limit" {
  type        = number
  description = "IMDSv2 hop limit on nodes. 1 keeps pods (which get credentials from Pod Identity) away from the node role's credentials."
  default     = 1
}

variable "system_node_group" {
  type = object({
    instance_types = optional(list(string), ["t3.large"])
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 2)
    max_size       = optional(number, 3)
    desired_size   = optional(number, 2)
    disk_size_gib  = optional(number, 50)
    taint          = optional(bool, true)
  })
  description = "The system node group (CoreDNS, add-on controllers, Karpenter). With taint = true it carries CriticalAddonsOnly=true:NoSchedule so only tolerating pods land there."
  default     = {}
}

variable "general_node_group" {
  type = object({
    enabled        = optional(bool, true)
    instance_types = optional(list(string), ["t3.large"])
    capacity_type  = optional(string, "ON_DEMAND")
    min_size       = optional(number, 1)
    max_size       = optional(number, 4)
    desired_size   = optional(number, 2)
    disk_size_gib  = optional(number, 50)
  })
  description = "An untainted CPU node group for the gateway and other workloads. Disable it when Karpenter provisions CPU nodes."
  default     = {}
}

variable "gpu_node_group" {
  type = object({
    enabled        = optional(bool, false)
    instance_types = optional(list(string), ["g6.xlarge"])
    capacity_type  = optional(string, "ON_DEMAND")
    ami_type       = optional(string, "AL2023_x86_64_NVIDIA")
    min_size       = optional(number, 0)
    max_size       = optional(number, 1)
    desired_size   = optional(number, 1)
    disk_size_gib  = optional(number, 200)
    subnet_ids     = optional(list(string))
  })
  description = "Optional managed GPU node group, tainted nvidia.com/gpu=true:NoSchedule and labelled gatehouse.dev/pool=gpu. desired_size = 0 scales it to zero (docs/runbooks/scale-gpu-to-zero.md). subnet_ids (default: all of subnet_ids) pins it to one AZ so a node that comes back after scale-to-zero can attach the EBS volume holding the models."
  default     = {}

  validation {
    condition     = contains(["ON_DEMAND", "SPOT"], var.gpu_node_group.capacity_type)
    error_message = "gpu_node_group.capacity_type is ON_DEMAND or SPOT."
  }
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
