variable "name" {
  type        = string
  description = "Prefix of the secret names (<name>/admin-key, <name>/hmac-secret, <name>/database-url, <name>/redis-url)."
}

variable "database" {
  type = object({
    host     = string
    port     = number
    name     = string
    username = string
  })
  description = "Where the gateway's own database role connects. Its password is generated here; the role is created once with the bootstrap SQL (docs/runbooks/deploy-eks.md). Null: no database-url secret (SQLite on a volume)."
  default     = null
}

variable "redis_url" {
  type        = string
  description = "rediss:// URL with the AUTH token (the elasticache module's redis_url). Null: no redis-url secret."
  default     = null
  sensitive   = true
}

variable "create_redis_url" {
  type        = bool
  description = "Whether to store redis_url (a plain flag, because a sensitive value cannot decide count)."
  default     = false
}

variable "recovery_window_days" {
  type        = number
  description = "Days a deleted secret stays recoverable (0 deletes at once; 7-30 otherwise). Teardown keeps them this long."
  default     = 7
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
