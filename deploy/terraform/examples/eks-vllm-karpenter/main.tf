# The full private platform: three AZs, EKS with a tainted system node group and Karpenter for GPU
# (spot first) and CPU capacity, vLLM per model scaled by KEDA (0..N) with Bedrock overflow, RDS
# PostgreSQL and ElastiCache Redis for N stateless gateway replicas, secrets in Secrets Manager,
# an SSM-only bastion. Non-prod defaults (single NAT, single-AZ RDS, one Redis node) in the tfvars.

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:the example takes the region's first available zones by name; pin azs where zone identity matters
  state = "available"
}

locals {
  azs       = slice(data.aws_availability_zones.available.names, 0, var.az_count)
  namespace = "gatehouse"
  tags = merge(var.tags, {
    "app.kubernetes.io/part-of" = "gatehouse"
    "gatehouse.dev/example"     = "eks-vllm-karpenter"
    "terraform"                 = "true"
  })
}

module "vpc" {
  source = "../../modules/vpc"

  name               = var.name
  cluster_name       = var.name
  azs                = local.azs
  single_nat_gateway = var.single_nat_gateway
  tags               = local.tags
}

module "eks" {
  source = "../../modules/eks"

  cluster_name         = var.name
  vpc_id               = module.vpc.vpc_id
  subnet_ids           = module.vpc.private_subnet_ids
  public_access_cidrs  = var.public_access_cidrs
  admin_principal_arns = var.admin_principal_arns

  # System nodes (tainted CriticalAddonsOnly) run CoreDNS, the add-on controllers and Karpenter;
  # Karpenter brings every other node: CPU (general NodePool) and GPU (gpu NodePool).
  system_node_group  = { instance_types = ["m7i.large"], min_size = 2, desired_size = 2, max_size = 3 }
  general_node_group = { enabled = false }
  gpu_node_group     = { enabled = false }

  tags = local.tags
}

module "karpenter" {
  source = "../../modules/karpenter"

  cluster_name           = module.eks.cluster_name
  cluster_endpoint       = module.eks.cluster_endpoint
  node_security_group_id = module.eks.cluster_security_group_id
  gpu_instance_families  = var.gpu_instance_families
  gpu_capacity_types     = var.gpu_capacity_types
  gpu_limit              = var.gpu_limit
  general_nodepool       = true
  tags                   = local.tags
}

module "bastion" {
  source = "../../modules/bastion"
  count  = var.enable_bastion ? 1 : 0

  name           = "${var.name}-bastion"
  vpc_id         = module.vpc.vpc_id
  vpc_cidr_block = module.vpc.vpc_cidr_block
  subnet_id      = module.vpc.private_subnet_ids[0]
  tags           = local.tags
}

locals {
  data_clients = merge(
    { eks = module.eks.cluster_security_group_id },
    var.enable_bastion ? { bastion = module.bastion[0].security_group_id } : {},
  )
}

module "rds" {
  source = "../../modules/rds"

  name                    = var.name
  vpc_id                  = module.vpc.vpc_id
  subnet_ids              = module.vpc.database_subnet_ids
  allowed_security_groups = local.data_clients
  instance_class          = var.rds_instance_class
  multi_az                = var.rds_multi_az
  deletion_protection     = var.deletion_protection
  skip_final_snapshot     = !var.deletion_protection
  tags                    = local.tags
}

module "elasticache" {
  source = "../../modules/elasticache"

  name                    = var.name
  vpc_id                  = module.vpc.vpc_id
  subnet_ids              = module.vpc.database_subnet_ids
  allowed_security_groups = local.data_clients
  num_cache_clusters      = var.redis_nodes
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
  create_redis_url = true
  redis_url        = module.elasticache.redis_url
  tags             = local.tags
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
  replicas                    = var.gateway_replicas
  service_account_annotations = module.iam.gatehouse_service_account_annotations
  node_selector               = { "gatehouse.dev/pool" = "general" }
  use_redis                   = true
  vllm_models = [for name, m in local.vllm : {
    name     = name
    provider = "vllm-${m.slug}"
    base_url = "http://vllm-${m.slug}.llm.svc.cluster.local:8000/v1"
  }]
  bedrock_region            = var.region
  bedrock_overflow_model_id = var.bedrock_overflow_model_id
}
