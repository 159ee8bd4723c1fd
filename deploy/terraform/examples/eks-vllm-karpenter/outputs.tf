locals {
  secret_names = module.secrets.secret_names
  get_secret   = "aws secretsmanager get-secret-value --region ${var.region} --query SecretString --output text --secret-id"

  vllm = { for m in var.vllm_models : m.name => merge(m, { slug = trim(replace(lower(m.name), "/[^a-z0-9]+/", "-"), "-") }) }

  vllm_manifests = join("\n---\n", [for name, m in local.vllm : templatefile("${path.module}/templates/vllm.yaml.tftpl", {
    slug                            = m.slug
    namespace                       = "llm"
    image                           = var.vllm_image
    model_json                      = jsonencode(m.model)
    served_name_json                = jsonencode(m.name)
    gpus                            = m.gpus
    max_model_len                   = m.max_model_len
    max_replicas                    = m.max_replicas
    cache_gib                       = m.cache_gib
    min_gpu_memory_mib              = m.min_gpu_memory_gib * 1024
    cooldown_seconds                = 900
    prometheus_url                  = var.prometheus_url
    requests_per_second_per_replica = 2
  })])
}

output "kubeconfig_command" {
  description = "Writes a kubeconfig context for the new cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.eks.cluster_name}"
}

output "karpenter_install_command" {
  description = "Installs Karpenter onto the system nodes, then its NodePools and EC2NodeClasses."
  value       = "${module.karpenter.helm_install_command} && terraform -chdir=deploy/terraform/examples/eks-vllm-karpenter output -raw karpenter_manifests | kubectl apply -f -"
}

output "karpenter_manifests" {
  description = "GPU and general NodePools and EC2NodeClasses (karpenter.sh/v1, karpenter.k8s.aws/v1)."
  value       = module.karpenter.manifests_yaml
}

output "platform_install_commands" {
  description = "Cluster add-ons installed with Helm after apply, in order: load balancer controller, NVIDIA device plugin, KEDA."
  value = [
    "helm repo add eks https://aws.github.io/eks-charts && helm upgrade --install aws-load-balancer-controller eks/aws-load-balancer-controller --namespace kube-system --set clusterName=${module.eks.cluster_name} --set region=${var.region} --set vpcId=${module.vpc.vpc_id} --set serviceAccount.name=aws-load-balancer-controller --wait",
    "helm repo add nvdp https://nvidia.github.io/k8s-device-plugin && helm upgrade --install nvidia-device-plugin nvdp/nvidia-device-plugin --namespace kube-system --set-string 'nodeSelector.gatehouse\\.dev/pool=gpu' --set 'tolerations[0].key=nvidia.com/gpu' --set 'tolerations[0].operator=Exists' --set 'tolerations[0].effect=NoSchedule'",
    "helm repo add kedacore https://kedacore.github.io/charts && helm upgrade --install keda kedacore/keda --namespace keda --create-namespace --wait",
  ]
}

output "vllm_manifests" {
  description = "vLLM Deployment, Service, cache volume and KEDA ScaledObject per model (namespace llm): terraform output -raw vllm_manifests | kubectl apply -f -"
  value       = local.vllm_manifests
}

output "kubernetes_secret_command" {
  description = "Copies the gateway's secrets from Secrets Manager into the Kubernetes Secret the chart reads (existingSecret); rerun after a rotation."
  value = join(" ", [
    "kubectl create namespace ${local.namespace} --dry-run=client -o yaml | kubectl apply -f - &&",
    "kubectl -n ${local.namespace} create secret generic gatehouse-secrets --dry-run=client -o yaml",
    "--from-literal=GATEHOUSE_ADMIN_KEY=\"$(${local.get_secret} ${local.secret_names["admin-key"]})\"",
    "--from-literal=GATEHOUSE_SECRET=\"$(${local.get_secret} ${local.secret_names["hmac-secret"]})\"",
    "--from-literal=GATEHOUSE_DATABASE_URL=\"$(${local.get_secret} ${local.secret_names["database-url"]})\"",
    "--from-literal=GATEHOUSE_REDIS_URL=\"$(${local.get_secret} ${local.secret_names["redis-url"]})\"",
    "| kubectl apply -f -",
  ])
}

output "database_bootstrap_command" {
  description = "Creates the gateway's own PostgreSQL role and hands it the database (once, before the first install)."
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
  value       = "terraform -chdir=deploy/terraform/examples/eks-vllm-karpenter output -raw helm_values > /tmp/gatehouse-values.yaml && helm upgrade --install gatehouse deploy/helm/gatehouse --namespace ${local.namespace} --create-namespace -f /tmp/gatehouse-values.yaml --wait"
}

output "gateway_url_command" {
  description = "Prints the gateway URL once the internal NLB exists (reachable inside the VPC, over a VPN or through the bastion)."
  value       = "echo \"http://$(kubectl -n ${local.namespace} get service gatehouse -o jsonpath='{.status.loadBalancer.ingress[0].hostname}')\""
}

output "first_admin_key_command" {
  description = "Prints the admin key (from Secrets Manager); use it once to create personal keys."
  value       = "${local.get_secret} ${local.secret_names["admin-key"]}"
}

output "bastion_session_command" {
  description = "Shell on the SSM-only bastion (null when disabled)."
  value       = var.enable_bastion ? module.bastion[0].ssm_session_command : null
}

output "rds_port_forward_command" {
  description = "Forwards localhost:5432 to RDS through the bastion (null when disabled)."
  value       = var.enable_bastion ? "aws ssm start-session --target ${module.bastion[0].instance_id} --document-name AWS-StartPortForwardingSessionToRemoteHost --parameters host=${module.rds.address},portNumber=5432,localPortNumber=5432" : null
}

output "rds_instance_identifier" {
  description = "RDS instance (teardown: its final snapshot and automated backups outlive destroy)."
  value       = module.rds.instance_identifier
}
