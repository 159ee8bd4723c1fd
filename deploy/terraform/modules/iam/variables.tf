variable "name" {
  type        = string
  description = "Name prefix for the IAM roles and policies."
}

variable "cluster_name" {
  type        = string
  description = "EKS cluster the service accounts live in."
}

variable "identity_mode" {
  type        = string
  description = "How pods get AWS credentials: \"pod_identity\" (EKS Pod Identity associations; no service account annotation) or \"irsa\" (IAM roles for service accounts through the OIDC provider; annotate the service account with the role ARN)."
  default     = "pod_identity"

  validation {
    condition     = contains(["pod_identity", "irsa"], var.identity_mode)
    error_message = "identity_mode is pod_identity or irsa."
  }
}

variable "oidc_provider_arn" {
  type        = string
  description = "IAM OIDC provider ARN of the cluster (needed when identity_mode = \"irsa\")."
  default     = null
}

variable "oidc_issuer_url" {
  type        = string
  description = "OIDC issuer URL of the cluster, https://... (needed when identity_mode = \"irsa\")."
  default     = null
}

variable "gatehouse_namespace" {
  type        = string
  description = "Namespace of the Gatehouse release."
  default     = "gatehouse"
}

variable "gatehouse_service_account" {
  type        = string
  description = "Service account name of the Gatehouse pods (the Helm chart's serviceAccount.name)."
  default     = "gatehouse"
}

variable "bedrock_model_arns" {
  type        = list(string)
  description = "Bedrock model ARNs the gateway may invoke: foundation models (arn:aws:bedrock:REGION::foundation-model/ID), inference profiles (arn:aws:bedrock:REGION:ACCOUNT:inference-profile/ID) and the foundation models behind them. Empty: no Bedrock policy. A wildcard may stand for the region (cross-region inference profiles route to several), never for the model."
  default     = []

  validation {
    condition = alltrue([
      for arn in var.bedrock_model_arns :
      can(regex("^arn:aws[a-z-]*:bedrock:[a-z0-9*-]*:[0-9*]*:(foundation-model|inference-profile|application-inference-profile|provisioned-model|imported-model|custom-model)/[^*]+$", arn))
    ])
    error_message = "Each bedrock_model_arns entry must be a Bedrock model or inference-profile ARN naming one model (no * in the resource id)."
  }
}

variable "secret_arns" {
  type        = list(string)
  description = "Secrets Manager secret ARNs the gateway role may read (for the Secrets Store CSI driver or External Secrets running with this role). Empty: no secrets policy."
  default     = []
}

variable "secrets_kms_key_arn" {
  type        = string
  description = "KMS key encrypting those secrets (kms:Decrypt is granted on it only through Secrets Manager)."
  default     = null
}

variable "enable_load_balancer_controller" {
  type        = bool
  description = "Create the IAM role for the AWS Load Balancer Controller (service account kube-system/aws-load-balancer-controller), which provisions the gateway's NLB."
  default     = true
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
