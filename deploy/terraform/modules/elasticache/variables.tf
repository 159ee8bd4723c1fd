variable "name" {
  type        = string
  description = "Replication group ID and name prefix of its companions (at most 40 characters)."

  validation {
    condition     = length(var.name) <= 40
    error_message = "ElastiCache replication group IDs are at most 40 characters."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the cache."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Database subnet IDs for the cache subnet group."
}

variable "allowed_security_groups" {
  type        = map(string)
  description = "Security groups allowed to connect on 6379, by a static label: { eks = <cluster security group id> }. No CIDR rule is ever created."
}

variable "engine_version" {
  type        = string
  description = "Redis OSS engine version."
  default     = "7.1"
}

variable "node_type" {
  type        = string
  description = "Cache node type (cache.t4g.small for non-prod, cache.r7g.large for production)."
  default     = "cache.t4g.small"
}

variable "num_cache_clusters" {
  type        = number
  description = "Nodes in the replication group: 1 (non-prod, no failover) or 2+ (a replica in another AZ, automatic failover)."
  default     = 2

  validation {
    condition     = var.num_cache_clusters >= 1 && var.num_cache_clusters <= 6
    error_message = "num_cache_clusters is between 1 and 6."
  }
}

variable "snapshot_retention_days" {
  type        = number
  description = "Days of automatic snapshots (0 disables; the gateway keeps only counters and limits windows in Redis)."
  default     = 1
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for encryption at rest (null: the ElastiCache service key)."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
