output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr_block" {
  description = "IPv4 CIDR of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "Public subnet IDs, one per AZ (internet-facing load balancers, NAT gateways)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnet IDs, one per AZ (EKS nodes and pods, internal load balancers)."
  value       = aws_subnet.private[*].id
}

output "database_subnet_ids" {
  description = "Database subnet IDs, one per AZ (RDS, ElastiCache); no route to the internet."
  value       = aws_subnet.database[*].id
}

output "nat_public_ips" {
  description = "Elastic IPs of the NAT gateways: the egress addresses to allow-list at upstream providers."
  value       = aws_eip.nat[*].public_ip
}
