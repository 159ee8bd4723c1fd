# Secrets Manager entries for the gateway: the admin key, the HMAC secret that hashes consumer keys
# (server.secret; every replica must share it), the database URL and the Redis URL, under one KMS key.
# Generated values live in the Terraform state as well: keep the state encrypted (S3 backend, README).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

resource "aws_kms_key" "this" {
  description             = "${var.name}: Gatehouse secrets"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json

  tags = var.tags
}

data "aws_iam_policy_document" "kms" {
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_alias" "this" {
  name          = "alias/${replace(var.name, "/", "-")}-secrets"
  target_key_id = aws_kms_key.this.key_id
}

resource "random_password" "admin_key" {
  length  = 48
  special = false
}

resource "random_password" "hmac_secret" {
  length  = 64
  special = false
}

resource "random_password" "database" {
  count = var.database == null ? 0 : 1

  length  = 40
  special = false # URL-safe without escaping
}

locals {
  # asyncpg (through SQLAlchemy) takes ssl=require in the URL, not libpq's sslmode=.
  database_url = var.database == null ? null : format(
    "postgresql://%s:%s@%s:%d/%s?ssl=require",
    var.database.username, random_password.database[0].result, var.database.host, var.database.port, var.database.name,
  )
  secrets = merge(
    { "admin-key" = "Gatehouse admin key (admin.key)", "hmac-secret" = "HMAC secret for consumer key hashes (server.secret)" },
    var.database == null ? {} : { "database-url" = "Gatehouse store.url (its own PostgreSQL role)" },
    var.create_redis_url ? { "redis-url" = "Gatehouse store.redis_url (rediss:// with AUTH token)" } : {},
  )
}

resource "aws_secretsmanager_secret" "this" {
  for_each = local.secrets

  name                    = "${var.name}/${each.key}"
  description             = each.value
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_days

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "admin_key" {
  secret_id     = aws_secretsmanager_secret.this["admin-key"].id
  secret_string = random_password.admin_key.result
}

resource "aws_secretsmanager_secret_version" "hmac_secret" {
  secret_id     = aws_secretsmanager_secret.this["hmac-secret"].id
  secret_string = random_password.hmac_secret.result
}

resource "aws_secretsmanager_secret_version" "database_url" {
  count = var.database == null ? 0 : 1

  secret_id     = aws_secretsmanager_secret.this["database-url"].id
  secret_string = local.database_url
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  count = var.create_redis_url ? 1 : 0

  secret_id     = aws_secretsmanager_secret.this["redis-url"].id
  secret_string = var.redis_url
}
