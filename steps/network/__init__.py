"""The network: the VPC, its subnets over two zones, the internet and NAT gateways, route tables."""
