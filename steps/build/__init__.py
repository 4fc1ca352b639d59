"""The app's images, built once in AWS and pulled by the instances: the ECR repository, the
CodeBuild project and its service role, and the build of each release (skipped for a release
whose images the repository already has). Not part of a stack made with --build-on-instance."""
