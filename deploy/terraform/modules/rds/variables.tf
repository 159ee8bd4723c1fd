variable "name" {
  type        = string
  description = "Identifier of the DB instance and name prefix of its companions."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the database."
}

variable "subnet_ids" {
  type        = list(string)
  description = "Database subnet IDs (private, no internet route; at least two AZs)."
}

variable "allowed_security_groups" {
  type        = map(string)
  description = "Security groups allowed to connect on 5432, by a static label: { eks = <cluster security group id>, bastion = <id> }. Labels are map keys so IDs unknown until apply still plan. No CIDR rule is ever created."
}

variable "engine_version" {
  type        = string
  description = "PostgreSQL version. A major only (\"16\") takes the newest minor and auto_minor_version_upgrade keeps it current; pin a minor (\"16.6\") to control upgrades."
  default     = "16"
}

variable "instance_class" {
  type        = string
  description = "DB instance class (db.t4g.micro for a trial, db.m7g.large and up for production)."
  default     = "db.t4g.medium"
}

variable "allocated_storage_gib" {
  type        = number
  description = "Initial gp3 storage in GiB."
  default     = 20
}

variable "max_allocated_storage_gib" {
  type        = number
  description = "Storage autoscaling ceiling in GiB (0 disables autoscaling)."
  default     = 200
}

variable "allow_major_version_upgrade" {
  type        = bool
  description = "Allow a change of engine_version to a new major (docs/runbooks/upgrade.md); false refuses it."
  default     = false
}

variable "multi_az" {
  type        = bool
  description = "Synchronous standby in a second AZ (production). False: single AZ (non-prod, half the price)."
  default     = true
}

variable "database_name" {
  type        = string
  description = "Database created with the instance; the gateway's store."
  default     = "gatehouse"
}

variable "master_username" {
  type        = string
  description = "Master user name. Its password is generated and rotated by RDS in Secrets Manager (manage_master_user_password); the gateway uses its own role (docs/runbooks/deploy-eks.md)."
  default     = "gatehouse_admin"
}

variable "performance_insights" {
  type        = bool
  description = "Performance Insights (7 days, free tier). Not every small instance class supports it: turn it off for db.t4g.micro if the API refuses."
  default     = true
}

variable "backup_retention_days" {
  type        = number
  description = "Days of automated backups and point-in-time recovery."
  default     = 7
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to delete the instance until this is turned off (turn it off explicitly before teardown)."
  default     = true
}

variable "skip_final_snapshot" {
  type        = bool
  description = "Delete without a final snapshot (non-prod only). False keeps a final snapshot, which outlives terraform destroy."
  default     = false
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for storage, Performance Insights and the managed master secret (null: a key is created)."
  default     = null
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
