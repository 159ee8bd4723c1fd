output "secret_arns" {
  description = "Secret ARNs by name (admin-key, hmac-secret, and database-url / redis-url when created)."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.arn }
}

output "secret_names" {
  description = "Secret names by key, for aws secretsmanager get-secret-value --secret-id."
  value       = { for k, s in aws_secretsmanager_secret.this : k => s.name }
}

output "kms_key_arn" {
  description = "KMS key encrypting the secrets."
  value       = aws_kms_key.this.arn
}

output "database_role_password" {
  description = "Password of the gateway's own PostgreSQL role, for the one-time bootstrap SQL (sensitive)."
  value       = try(random_password.database[0].result, null)
  sensitive   = true
}
