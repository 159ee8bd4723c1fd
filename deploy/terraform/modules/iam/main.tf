# IAM for workloads: the Gatehouse role (Bedrock on listed model ARNs only, optional secret reads)
# and the AWS Load Balancer Controller role, through EKS Pod Identity or IRSA.

data "aws_partition" "current" {}

locals {
  irsa        = var.identity_mode == "irsa"
  oidc_issuer = local.irsa ? replace(var.oidc_issuer_url, "https://", "") : ""
  # The trusted (namespace, service account) per role.
  service_accounts = merge(
    { gatehouse = { namespace = var.gatehouse_namespace, name = var.gatehouse_service_account } },
    var.enable_load_balancer_controller ? {
      load_balancer_controller = { namespace = "kube-system", name = "aws-load-balancer-controller" }
    } : {},
  )
}

data "aws_iam_policy_document" "assume" {
  for_each = local.service_accounts

  dynamic "statement" {
    for_each = local.irsa ? [] : [1]
    content {
      actions = ["sts:AssumeRole", "sts:TagSession"]
      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = local.irsa ? [1] : []
    content {
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [var.oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:sub"
        values   = ["system:serviceaccount:${each.value.namespace}:${each.value.name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${local.oidc_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "this" {
  for_each = local.service_accounts

  name_prefix        = "${substr(var.name, 0, 20)}-${substr(replace(each.key, "_", "-"), 0, 10)}-"
  description        = "${var.name}: ${each.value.namespace}/${each.value.name} on ${var.cluster_name}"
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json

  lifecycle {
    precondition {
      condition     = !local.irsa || (var.oidc_provider_arn != null && var.oidc_issuer_url != null)
      error_message = "identity_mode = \"irsa\" needs oidc_provider_arn and oidc_issuer_url."
    }
  }

  tags = var.tags
}

resource "aws_eks_pod_identity_association" "this" {
  for_each = local.irsa ? {} : local.service_accounts

  cluster_name    = var.cluster_name
  namespace       = each.value.namespace
  service_account = each.value.name
  role_arn        = aws_iam_role.this[each.key].arn

  tags = var.tags
}

# Bedrock: invoke the listed models only. Converse and ConverseStream are authorised by these two
# actions (IAM has no separate Converse action); no other Bedrock action, no "*".
data "aws_iam_policy_document" "bedrock" {
  count = length(var.bedrock_model_arns) > 0 ? 1 : 0

  statement {
    sid       = "InvokeListedModels"
    actions   = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    resources = var.bedrock_model_arns
  }
}

resource "aws_iam_role_policy" "bedrock" {
  count = length(var.bedrock_model_arns) > 0 ? 1 : 0

  name   = "bedrock-invoke-listed-models"
  role   = aws_iam_role.this["gatehouse"].id
  policy = data.aws_iam_policy_document.bedrock[0].json
}

data "aws_iam_policy_document" "secrets" {
  count = length(var.secret_arns) > 0 ? 1 : 0

  statement {
    sid       = "ReadGatehouseSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = var.secret_arns
  }

  dynamic "statement" {
    for_each = var.secrets_kms_key_arn == null ? [] : [1]
    content {
      sid       = "DecryptThroughSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [var.secrets_kms_key_arn]
      condition {
        test     = "StringLike"
        variable = "kms:ViaService"
        values   = ["secretsmanager.*.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "secrets" {
  count = length(var.secret_arns) > 0 ? 1 : 0

  name   = "read-gatehouse-secrets"
  role   = aws_iam_role.this["gatehouse"].id
  policy = data.aws_iam_policy_document.secrets[0].json
}

resource "aws_iam_policy" "load_balancer_controller" {
  count = var.enable_load_balancer_controller ? 1 : 0

  name_prefix = "${substr(var.name, 0, 20)}-lbc-"
  description = "AWS Load Balancer Controller (upstream iam_policy.json, v2.x)"
  policy      = data.aws_iam_policy_document.load_balancer_controller.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "load_balancer_controller" {
  count = var.enable_load_balancer_controller ? 1 : 0

  role       = aws_iam_role.this["load_balancer_controller"].name
  policy_arn = aws_iam_policy.load_balancer_controller[0].arn
}
