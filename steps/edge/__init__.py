"""What visitors reach: the load balancer, its target groups, listeners and rules, the certificate."""
