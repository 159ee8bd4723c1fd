terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    tls = {
      source  = "hashicorp/tls"
      version = "~> 4.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Remote state (recommended for anything shared): copy backend.tf.example to backend.tf, fill in
  # the bucket and lock table, then `terraform init -migrate-state`. See deploy/terraform/README.md.
}

provider "aws" {
  region = var.region

  # Tags on every taggable resource the provider creates, on top of the modules' explicit tags.
  default_tags {
    tags = local.tags
  }
}
