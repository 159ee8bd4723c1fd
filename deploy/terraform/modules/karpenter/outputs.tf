output "controller_role_arn" {
  description = "IAM role of the Karpenter controller (bound to the karpenter service account by a Pod Identity association)."
  value       = aws_iam_role.controller.arn
}

output "node_role_name" {
  description = "IAM role name of Karpenter's nodes (EC2NodeClass spec.role)."
  value       = aws_iam_role.node.name
}

output "interruption_queue_name" {
  description = "SQS queue for interruption events (Helm value settings.interruptionQueue)."
  value       = aws_sqs_queue.interruption.name
}

output "helm_install_command" {
  description = "Installs the Karpenter controller onto the system nodes, with this module's settings."
  value = join(" ", [
    "helm upgrade --install karpenter oci://public.ecr.aws/karpenter/karpenter",
    "--version ${var.karpenter_version} --namespace ${var.namespace} --wait",
    "--set settings.clusterName=${var.cluster_name}",
    "--set settings.clusterEndpoint=${var.cluster_endpoint}",
    "--set settings.interruptionQueue=${aws_sqs_queue.interruption.name}",
    "--set-string 'nodeSelector.gatehouse\\.dev/pool=system'",
  ])
}

output "manifests" {
  description = "NodePool and EC2NodeClass YAML by name (nodepool-gpu, ec2nodeclass-gpu, and the general pair when enabled)."
  value       = local.manifests
}

output "manifests_yaml" {
  description = "All NodePool/EC2NodeClass manifests as one multi-document YAML: terraform output -raw ... | kubectl apply -f -"
  value       = join("\n---\n", [for k in sort(keys(local.manifests)) : local.manifests[k]])
}
