# The smallest path to Claude Code on a private model: a two-AZ VPC with one NAT gateway, EKS with
# one untainted system node group and one GPU node (Ollama), a single-AZ RDS PostgreSQL for keys and
# the usage ledger, secrets in Secrets Manager, and an internal NLB in front of the gateway.
# One gateway replica: limits stay in-process, so no ElastiCache.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:the example takes the region's first available zones by name; pin azs where zone identity matters
  state = "available"
}

locals {
  azs       = slice(data.aws_availability_zones.available.names, 0, 2)
  namespace = "gatehouse"
  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "gatehouse"
    "gatehouse.dev/example"     = "eks-ollama"
    "terraform"                 = "true"
  })
}

module "vpc" {
  source = "../../modules/vpc"

  name               = var.name
  cluster_name       = var.name
  azs                = local.azs
  single_nat_gateway = true
  tags               = local.tags
}

module "eks" {
  source = "../../modules/eks"

  cluster_name         = var.name
  vpc_id               = module.vpc.vpc_id
  subnet_ids           = module.vpc.private_subnet_ids
  public_access_cidrs  = var.public_access_cidrs
  admin_principal_arns = var.admin_principal_arns

  # Smallest setup: the system nodes also run the gateway (no taint, no separate general group).
  system_node_group  = { taint = false, instance_types = ["t3.large"], min_size = 1, desired_size = 2, max_size = 3 }
  general_node_group = { enabled = false }
  gpu_node_group = {
    enabled        = true
    instance_types = [var.gpu_instance_type]
    capacity_type  = var.gpu_capacity_type
    min_size       = 0
    max_size       = 1
    desired_size   = var.gpu_node_count
    # One AZ: the EBS volume with the models is zonal, and the node must come back next to it.
    subnet_ids = [module.vpc.private_subnet_ids[0]]
  }

  tags = local.tags
}

module "rds" {
  source = "../../modules/rds"

  name                    = var.name
  vpc_id                  = module.vpc.vpc_id
  subnet_ids              = module.vpc.database_subnet_ids
  allowed_security_groups = { eks = module.eks.cluster_security_group_id }
  instance_class          = "db.t4g.micro"
  performance_insights    = false
  multi_az                = false
  deletion_protection     = var.deletion_protection
  skip_final_snapshot     = !var.deletion_protection
  backup_retention_days   = 3
  tags                    = local.tags
}

module "secrets" {
  source = "../../modules/secrets"

  name = "gatehouse/${var.name}"
  database = {
    host     = module.rds.address
    port     = module.rds.port
    name     = module.rds.database_name
    username = "gatehouse"
  }
  recovery_window_days = 7
  tags                 = local.tags
}

module "iam" {
  source = "../../modules/iam"

  name                      = var.name
  cluster_name              = module.eks.cluster_name
  identity_mode             = "pod_identity"
  gatehouse_namespace       = local.namespace
  gatehouse_service_account = "gatehouse"
  bedrock_model_arns        = var.bedrock_model_arns
  secret_arns               = values(module.secrets.secret_arns)
  secrets_kms_key_arn       = module.secrets.kms_key_arn
  tags                      = local.tags
}

# Helm values for deploy/helm/gatehouse (and the gateway config inside them), from the above.
module "gatehouse_values" {
  source = "../../modules/gatehouse-values"

  image_repository            = var.image_repository
  image_tag                   = var.image_tag
  replicas                    = 1
  service_account_annotations = module.iam.gatehouse_service_account_annotations
  ollama = {
    base_url = "http://ollama.ollama.svc.cluster.local:11434/v1"
    models   = [var.ollama_model]
  }
  bedrock_region = length(var.bedrock_model_arns) > 0 ? var.region : null
}
