"""What the commands do, apart from parsing and printing: a stack's lifecycle (up, plan, status,
scale, down), cleanup and reap across stacks, a class's fleet from its roster, the app's health
wait, commands on instances through the bastion, the price table."""
