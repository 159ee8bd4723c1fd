output "instance_id" {
  description = "Instance ID of the bastion (target of aws ssm start-session)."
  value       = aws_instance.this.id
}

output "security_group_id" {
  description = "Security group of the bastion (allow it on RDS/ElastiCache)."
  value       = aws_security_group.this.id
}

output "ssm_session_command" {
  description = "Opens a shell on the bastion through SSM (needs the Session Manager plugin)."
  value       = "aws ssm start-session --target ${aws_instance.this.id}"
}

output "port_forward_command_template" {
  description = "Forwards a local port to a host inside the VPC through the bastion; replace HOST and PORT (e.g. the RDS address and 5432)."
  value       = "aws ssm start-session --target ${aws_instance.this.id} --document-name AWS-StartPortForwardingSessionToRemoteHost --parameters host=HOST,portNumber=PORT,localPortNumber=PORT"
}
