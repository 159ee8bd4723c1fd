output "gatehouse_role_arn" {
  description = "IAM role of the Gatehouse pods. With identity_mode = \"irsa\" put it in the chart's serviceAccount.annotations as eks.amazonaws.com/role-arn; with Pod Identity the association is already made."
  value       = aws_iam_role.this["gatehouse"].arn
}

output "gatehouse_service_account_annotations" {
  description = "Annotations for the Gatehouse service account (Helm value serviceAccount.annotations): the IRSA role ARN, or none with Pod Identity."
  value       = local.irsa ? { "eks.amazonaws.com/role-arn" = aws_iam_role.this["gatehouse"].arn } : {}
}

output "load_balancer_controller_role_arn" {
  description = "IAM role of the AWS Load Balancer Controller (null when disabled)."
  value       = var.enable_load_balancer_controller ? aws_iam_role.this["load_balancer_controller"].arn : null
}

output "load_balancer_controller_service_account_annotations" {
  description = "Annotations for the load balancer controller's service account (its chart's serviceAccount.annotations); empty with Pod Identity."
  value       = var.enable_load_balancer_controller && local.irsa ? { "eks.amazonaws.com/role-arn" = aws_iam_role.this["load_balancer_controller"].arn } : {}
}

output "bedrock_model_arns" {
  description = "The Bedrock model ARNs the gateway role may invoke."
  value       = var.bedrock_model_arns
}
