locals {
  secret_names = module.secrets.secret_names
  get_secret   = "aws secretsmanager get-secret-value --region ${var.region} --query SecretString --output text --secret-id"
}

output "kubeconfig_command" {
  description = "Writes a kubeconfig context for the new cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "kubernetes_secret_command" {
  description = "Copies the gateway's secrets from Secrets Manager into the Kubernetes Secret the chart reads (existingSecret); rerun after a rotation."
  value = join(" ", [
    "kubectl create namespace ${local.namespace} --dry-run=client -o yaml | kubectl apply -f - &&",
    "kubectl -n ${local.namespace} create secret generic gatehouse-secrets --dry-run=client -o yaml",
    "--from-literal=GATEHOUSE_ADMIN_KEY=\"$(${local.get_secret} ${local.secret_names["admin-key"]})\"",
    "--from-literal=GATEHOUSE_SECRET=\"$(${local.get_secret} ${local.secret_names["hmac-secret"]})\"",
    "--from-literal=GATEHOUSE_DATABASE_URL=\"$(${local.get_secret} ${local.secret_names["database-url"]})\"",
    "| kubectl apply -f -",
  ])
}

output "database_bootstrap_command" {
  description = "Creates the gateway's own PostgreSQL role and hands it the database (once, before the first install); the RDS-managed master password is read from Secrets Manager."
  value = join(" ", [
    "kubectl -n ${local.namespace} run gatehouse-db-bootstrap --rm -i --restart=Never --pod-running-timeout=5m --image=postgres:16-alpine",
    "--env=PGPASSWORD=\"$(${local.get_secret} ${module.rds.master_user_secret_arn} | jq -r .password)\"",
    "-- psql \"host=${module.rds.address} port=${module.rds.port} dbname=${module.rds.database_name} user=${module.rds.master_username} sslmode=require\"",
    "-v app_role=gatehouse -v db_name=${module.rds.database_name} -v app_password=\"$(terraform output -raw database_role_password)\"",
    "< ../../bootstrap-db.sql",
  ])
}

output "database_role_password" {
  description = "Password of the gateway's PostgreSQL role (read by the bootstrap command)."
  value       = module.secrets.database_role_password
  sensitive   = true
}

output "helm_values" {
  description = "Values for deploy/helm/gatehouse, filled from this configuration (no secrets)."
  value       = module.gatehouse_values.values_yaml
}

output "helm_install_command" {
  description = "Installs the gateway chart with the values above (run from the repository root)."
  value       = "terraform -chdir=deploy/terraform/examples/eks-ollama output -raw helm_values > /tmp/gatehouse-values.yaml && helm upgrade --install gatehouse deploy/helm/gatehouse --namespace ${local.namespace} --create-namespace -f /tmp/gatehouse-values.yaml --wait"
}

output "load_balancer_controller_install_command" {
  description = "Installs the AWS Load Balancer Controller, which turns the gateway's Service into an internal NLB."
  value       = "helm repo add eks https://aws.github.io/eks-charts && helm upgrade --install aws-load-balancer-controller eks/aws-load-balancer-controller --namespace kube-system --set clusterName=${module.eks.cluster_name} --set region=${var.region} --set vpcId=${module.vpc.vpc_id} --set serviceAccount.name=aws-load-balancer-controller --wait"
}

output "gateway_url_command" {
  description = "Prints the gateway URL once the internal NLB exists (reachable from the VPC, a VPN or the bastion; or use `gatehouse client-env claude-code --port-forward`)."
  value       = "echo \"http://$(kubectl -n ${local.namespace} get service gatehouse -o jsonpath='{.status.loadBalancer.ingress[0].hostname}')\""
}

output "first_admin_key_command" {
  description = "Prints the admin key (from Secrets Manager); use it once to create personal keys with the admin API or `gatehouse keys create`."
  value       = "${local.get_secret} ${local.secret_names["admin-key"]}"
}

output "gpu_node_group_name" {
  description = "The GPU managed node group (scale with gpu_node_count, or see docs/runbooks/scale-gpu-to-zero.md)."
  value       = module.eks.node_group_names["gpu"]
}

output "rds_instance_identifier" {
  description = "RDS instance (teardown: its final snapshot and automated backups outlive destroy)."
  value       = module.rds.instance_identifier
}
