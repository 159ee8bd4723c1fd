output "address" {
  description = "Hostname of the database (private)."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Name of the gateway's database."
  value       = aws_db_instance.this.db_name
}

output "master_username" {
  description = "Master user name (its password is in master_user_secret_arn)."
  value       = aws_db_instance.this.username
}

output "master_user_secret_arn" {
  description = "Secrets Manager secret holding the RDS-managed master password (rotated by RDS)."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "Security group of the database."
  value       = aws_security_group.this.id
}

output "instance_identifier" {
  description = "DB instance identifier (for snapshots and the teardown check)."
  value       = aws_db_instance.this.identifier
}

output "kms_key_arn" {
  description = "KMS key encrypting the storage and the master secret."
  value       = local.kms_key_arn
}
