# Managed node groups: system (tainted CriticalAddonsOnly), general (optional, untainted) and GPU
# (optional, tainted nvidia.com/gpu). Every node: IMDSv2 only, encrypted gp3 root volume, SSM agent.

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
  name_prefix        = "${substr(var.cluster_name, 0, 26)}-node-"
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

locals {
  node_groups = merge(
    {
      system = {
        instance_types = var.system_node_group.instance_types
        capacity_type  = var.system_node_group.capacity_type
        ami_type       = "AL2023_x86_64_STANDARD"
        min_size       = var.system_node_group.min_size
        max_size       = var.system_node_group.max_size
        desired_size   = var.system_node_group.desired_size
        disk_size_gib  = var.system_node_group.disk_size_gib
        subnet_ids     = var.subnet_ids
        labels         = { "gatehouse.dev/pool" = "system" }
        taints         = var.system_node_group.taint ? [{ key = "CriticalAddonsOnly", value = "true", effect = "NO_SCHEDULE" }] : []
      }
    },
    var.general_node_group.enabled ? {
      general = {
        instance_types = var.general_node_group.instance_types
        capacity_type  = var.general_node_group.capacity_type
        ami_type       = "AL2023_x86_64_STANDARD"
        min_size       = var.general_node_group.min_size
        max_size       = var.general_node_group.max_size
        desired_size   = var.general_node_group.desired_size
        disk_size_gib  = var.general_node_group.disk_size_gib
        subnet_ids     = var.subnet_ids
        labels         = { "gatehouse.dev/pool" = "general" }
        taints         = []
      }
    } : {},
    var.gpu_node_group.enabled ? {
      gpu = {
        instance_types = var.gpu_node_group.instance_types
        capacity_type  = var.gpu_node_group.capacity_type
        ami_type       = var.gpu_node_group.ami_type
        min_size       = var.gpu_node_group.min_size
        max_size       = var.gpu_node_group.max_size
        desired_size   = var.gpu_node_group.desired_size
        disk_size_gib  = var.gpu_node_group.disk_size_gib
        subnet_ids     = coalesce(var.gpu_node_group.subnet_ids, var.subnet_ids)
        labels         = { "gatehouse.dev/pool" = "gpu", "nvidia.com/gpu.present" = "true" }
        taints         = [{ key = "nvidia.com/gpu", value = "true", effect = "NO_SCHEDULE" }]
      }
    } : {},
  )
}

resource "aws_launch_template" "node" {
  for_each = local.node_groups

  name_prefix            = "${var.cluster_name}-${each.key}-"
  description            = "${var.cluster_name} ${each.key} nodes: IMDSv2 only, encrypted root volume"
  update_default_version = true

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = var.node_imds_hop_limit
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = each.value.disk_size_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.cluster_name}-${each.key}" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(var.tags, { Name = "${var.cluster_name}-${each.key}" })
  }

  tags = var.tags
}

resource "aws_eks_node_group" "this" {
  for_each = local.node_groups

  cluster_name    = aws_eks_cluster.this.name
  node_group_name = each.key
  node_role_arn   = aws_iam_role.node.arn
  subnet_ids      = each.value.subnet_ids
  version         = var.kubernetes_version
  ami_type        = each.value.ami_type
  capacity_type   = each.value.capacity_type
  instance_types  = each.value.instance_types
  labels          = each.value.labels

  launch_template {
    id      = aws_launch_template.node[each.key].id
    version = aws_launch_template.node[each.key].latest_version
  }

  scaling_config {
    min_size     = each.value.min_size
    max_size     = each.value.max_size
    desired_size = each.value.desired_size
  }

  update_config {
    max_unavailable = 1
  }

  dynamic "taint" {
    for_each = each.value.taints
    content {
      key    = taint.value.key
      value  = taint.value.value
      effect = taint.value.effect
    }
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy_attachment.node]
}
