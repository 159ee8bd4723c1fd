variable "name" {
  type        = string
  description = "Name prefix for every resource (also the EKS cluster name used in subnet discovery tags)."
}

variable "cidr_block" {
  type        = string
  description = "IPv4 CIDR of the VPC. Public, private and database subnets are carved from it with cidrsubnet()."
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 16
    error_message = "cidr_block must be an IPv4 CIDR of /16 or larger, e.g. 10.40.0.0/16."
  }
}

variable "azs" {
  type        = list(string)
  description = "Availability zones to spread subnets across: 2 for the smallest setup, 3 for production (the address plan has room for 3)."

  validation {
    condition     = length(var.azs) >= 2 && length(var.azs) <= 3
    error_message = "Give 2 or 3 availability zones (EKS and RDS subnet groups need at least 2; the address plan holds 3)."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all private subnets (cheaper, non-prod) instead of one per AZ (survives an AZ loss)."
  default     = false
}

variable "cluster_name" {
  type        = string
  description = "EKS cluster name, written into subnet tags so the load balancer controller and Karpenter discover the subnets."
}

variable "flow_log_retention_days" {
  type        = number
  description = "Days to keep VPC flow logs in CloudWatch Logs (0 disables flow logs)."
  default     = 30
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key ARN for the flow log group (null: CloudWatch Logs' default encryption)."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
