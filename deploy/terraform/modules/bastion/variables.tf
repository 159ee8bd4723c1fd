variable "name" {
  type        = string
  description = "Name of the bastion instance and prefix of its role and security group."
}

variable "vpc_id" {
  type        = string
  description = "VPC of the bastion."
}

variable "vpc_cidr_block" {
  type        = string
  description = "VPC CIDR: the bastion may open PostgreSQL, Redis and HTTPS connections inside it."
}

variable "subnet_id" {
  type        = string
  description = "Private subnet of the bastion (it has no public address; sessions go through SSM)."
}

variable "instance_type" {
  type        = string
  description = "Instance type (a small Graviton instance is plenty for port forwarding and psql)."
  default     = "t4g.nano"
}

variable "ami_ssm_parameter" {
  type        = string
  description = "SSM parameter naming the AMI (Amazon Linux 2023 for arm64 by default; its SSM agent is preinstalled)."
  default     = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
}

variable "tags" {
  type        = map(string)
  description = "Tags added to every resource."
  default     = {}
}
