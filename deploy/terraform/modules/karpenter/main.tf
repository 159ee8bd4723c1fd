# Karpenter: the controller's IAM role (Pod Identity), the node role and its EKS access entry, the
# SQS interruption queue fed by EventBridge, and the NodePool/EC2NodeClass manifests to apply after
# the Helm release (see outputs; no Kubernetes provider is needed to plan this module).

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = data.aws_caller_identity.current.account_id
  queue_name = "${var.cluster_name}-karpenter"
}

# ---- Node role: what Karpenter's EC2 instances run as --------------------------------------------

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${substr(var.cluster_name, 0, 20)}-karpenter-node-"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonSSMManagedInstanceCore",
  ])

  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value}"
}

resource "aws_eks_access_entry" "node" {
  cluster_name  = var.cluster_name
  principal_arn = aws_iam_role.node.arn
  type          = "EC2_LINUX"

  tags = var.tags
}

# ---- Controller role -------------------------------------------------------------------------------

data "aws_iam_policy_document" "controller_assume" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "controller" {
  name_prefix        = "${substr(var.cluster_name, 0, 20)}-karpenter-"
  assume_role_policy = data.aws_iam_policy_document.controller_assume.json

  tags = var.tags
}

resource "aws_iam_role_policy" "controller" {
  name   = "karpenter-controller"
  role   = aws_iam_role.controller.id
  policy = data.aws_iam_policy_document.controller.json
}

resource "aws_eks_pod_identity_association" "controller" {
  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = "karpenter"
  role_arn        = aws_iam_role.controller.arn

  tags = var.tags
}

# ---- Interruption queue: spot interruptions, rebalance, scheduled maintenance, state changes -------

resource "aws_sqs_queue" "interruption" {
  name                      = local.queue_name
  message_retention_seconds = 300
  sqs_managed_sse_enabled   = true

  tags = var.tags
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "EventBridgeAndSqs"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.interruption.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "sqs.amazonaws.com"]
    }
  }
  statement {
    sid       = "DenyHTTP"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.interruption.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "interruption" {
  queue_url = aws_sqs_queue.interruption.url
  policy    = data.aws_iam_policy_document.queue.json
}

locals {
  events = {
    health-scheduled-change = { source = ["aws.health"], detail-type = ["AWS Health Event"] }
    spot-interruption       = { source = ["aws.ec2"], detail-type = ["EC2 Spot Instance Interruption Warning"] }
    instance-rebalance      = { source = ["aws.ec2"], detail-type = ["EC2 Instance Rebalance Recommendation"] }
    instance-state-change   = { source = ["aws.ec2"], detail-type = ["EC2 Instance State-change Notification"] }
  }
}

resource "aws_cloudwatch_event_rule" "this" {
  for_each = local.events

  name_prefix   = "${substr(var.cluster_name, 0, 20)}-${substr(each.key, 0, 12)}-"
  description   = "Karpenter interruption handling: ${each.key}"
  event_pattern = jsonencode(each.value)

  tags = var.tags
}

resource "aws_cloudwatch_event_target" "this" {
  for_each = local.events

  rule      = aws_cloudwatch_event_rule.this[each.key].name
  target_id = "karpenter-interruption-queue"
  arn       = aws_sqs_queue.interruption.arn
}

# ---- Manifests (applied with kubectl after the Helm release) ---------------------------------------

locals {
  nodeclass_vars = {
    node_role_name    = aws_iam_role.node.name
    ami_alias         = var.ami_alias
    cluster_name      = var.cluster_name
    security_group_id = var.node_security_group_id
    tags_json         = jsonencode(merge(var.tags, { "karpenter.sh/discovery" = var.cluster_name }))
  }
  manifests = merge(
    {
      "ec2nodeclass-gpu" = templatefile("${path.module}/templates/ec2nodeclass.yaml.tftpl",
      merge(local.nodeclass_vars, { name = "gpu", disk_size_gib = var.gpu_disk_size_gib }))
      "nodepool-gpu" = templatefile("${path.module}/templates/nodepool-gpu.yaml.tftpl", {
        instance_families_json = jsonencode(var.gpu_instance_families)
        capacity_types_json    = jsonencode(var.gpu_capacity_types)
        gpu_limit              = var.gpu_limit
        consolidate_after      = var.gpu_consolidate_after
      })
    },
    var.general_nodepool ? {
      "ec2nodeclass-general" = templatefile("${path.module}/templates/ec2nodeclass.yaml.tftpl",
      merge(local.nodeclass_vars, { name = "general", disk_size_gib = 50 }))
      "nodepool-general" = templatefile("${path.module}/templates/nodepool-general.yaml.tftpl", {
        cpu_limit = var.general_cpu_limit
      })
    } : {},
  )
}
