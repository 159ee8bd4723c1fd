# ElastiCache Redis for the gateway's shared limits and counters: TLS in transit, an AUTH token,
# encrypted at rest, reachable from the allowed security groups only.

resource "random_password" "auth_token" {
  length  = 64
  special = false # AUTH tokens exclude @, " and /; alphanumerics are simplest to carry in a rediss:// URL
}

resource "aws_elasticache_subnet_group" "this" {
  name        = var.name
  description = "${var.name}: database subnets"
  subnet_ids  = var.subnet_ids

  tags = var.tags
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-redis-"
  description = "${var.name}: Redis from the allowed security groups only"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-redis" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "redis" {
  for_each = var.allowed_security_groups

  security_group_id            = aws_security_group.this.id
  description                  = "Redis from ${each.key}"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = each.value

  tags = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV2_AWS_50:failover and Multi-AZ follow num_cache_clusters (default 2); one node is a non-prod choice
  replication_group_id = var.name
  description          = "${var.name}: Gatehouse limits and counters"
  engine               = "redis"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = 6379
  num_cache_clusters   = var.num_cache_clusters

  automatic_failover_enabled = var.num_cache_clusters > 1
  multi_az_enabled           = var.num_cache_clusters > 1

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.this.id]

  transit_encryption_enabled = true
  auth_token                 = random_password.auth_token.result
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn

  auto_minor_version_upgrade = true
  snapshot_retention_limit   = var.snapshot_retention_days
  apply_immediately          = false

  tags = var.tags
}
