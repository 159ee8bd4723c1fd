output "primary_endpoint" {
  description = "Primary endpoint hostname (writes; TLS on port 6379)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Redis port."
  value       = aws_elasticache_replication_group.this.port
}

output "auth_token" {
  description = "The Redis AUTH token (sensitive; also inside redis_url)."
  value       = random_password.auth_token.result
  sensitive   = true
}

output "redis_url" {
  description = "rediss:// URL with the AUTH token, for the gateway's store.redis_url (sensitive: store it in Secrets Manager, never in values files)."
  value       = "rediss://:${random_password.auth_token.result}@${aws_elasticache_replication_group.this.primary_endpoint_address}:6379/0"
  sensitive   = true
}

output "security_group_id" {
  description = "Security group of the cache."
  value       = aws_security_group.this.id
}
