# Helm values for deploy/helm/gatehouse and the gateway config inside them, computed from the
# platform's outputs. Secrets are never values: the config reads them from the environment
# (${VAR} interpolation), and the chart fills the environment from existingSecret.

locals {
  overflow = var.bedrock_region != null && var.bedrock_overflow_model_id != null

  providers = merge(
    var.ollama == null ? {} : { ollama = { type = "openai", base_url = var.ollama.base_url, read_timeout = 600 } },
    { for m in var.vllm_models : m.provider => { type = "openai", base_url = m.base_url, connect_timeout = 3, read_timeout = 600 } },
    var.bedrock_region == null ? {} : { bedrock = { type = "bedrock", region = var.bedrock_region } },
  )

  overflow_deployment = local.overflow ? [{ provider = "bedrock", model = var.bedrock_overflow_model_id }] : []

  models = concat(
    var.ollama == null ? [] : [for name in var.ollama.models : {
      name        = name
      private     = !local.overflow
      deployments = concat([{ provider = "ollama", model = name }], local.overflow_deployment)
    }],
    [for m in var.vllm_models : {
      name        = m.name
      private     = !local.overflow
      deployments = concat([{ provider = m.provider, model = m.name }], local.overflow_deployment)
    }],
  )

  nlb_annotations = tomap({
    "service.beta.kubernetes.io/aws-load-balancer-type"            = "external"
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type" = "ip"
    "service.beta.kubernetes.io/aws-load-balancer-scheme"          = "internal"
  })

  claude_code_model = coalesce(var.claude_code_model, try(local.models[0].name, null))

  config = {
    server        = { host = "0.0.0.0", port = 8080, secret = "$${GATEHOUSE_SECRET}", drain_seconds = 5, shutdown_grace_seconds = 60 }
    store         = merge({ url = "$${GATEHOUSE_DATABASE_URL}" }, var.use_redis ? { redis_url = "$${GATEHOUSE_REDIS_URL}" } : {})
    admin         = { key = "$${GATEHOUSE_ADMIN_KEY}" }
    providers     = local.providers
    models        = local.models
    model_aliases = { "claude-*" = local.claude_code_model }
  }

  values = {
    image          = { repository = var.image_repository, tag = var.image_tag }
    replicaCount   = var.replicas
    serviceAccount = { create = true, name = "gatehouse", annotations = var.service_account_annotations }
    existingSecret = var.existing_secret
    nodeSelector   = var.node_selector
    service = {
      type        = var.internal_load_balancer ? "LoadBalancer" : "ClusterIP"
      port        = 80
      annotations = var.internal_load_balancer ? local.nlb_annotations : tomap({})
    }
    config = local.config
  }
}
