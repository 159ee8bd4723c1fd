output "values" {
  description = "Helm values for deploy/helm/gatehouse as an object."
  value       = local.values
}

output "values_yaml" {
  description = "Helm values for deploy/helm/gatehouse as YAML (helm install -f)."
  value       = yamlencode(local.values)
}

output "gateway_config_yaml" {
  description = "The gateway config alone (chart value config), as YAML: check it with `gatehouse check --config`."
  value       = yamlencode(local.config)
}
