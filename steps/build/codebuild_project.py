"""The CodeBuild project that builds both images of a release and pushes them to the repository."""
from provisioner.engine.context import Resource
from provisioner.engine.kinds import FREE, BatchTags, Iam, Listing, actions
from provisioner.engine.registry import Step, created, register

from steps.build.build_role import BUILD_ROLE_ARN, log_group_name, project_name
from steps.build.ecr_repository import repository_name

PROJECT_ARN = "arn:{partition}:codebuild:{region}:{account}:project/{stack}-image-build"
# The build log group's streams (steps/build/codebuild_log_group.py makes the group).
LOG_GROUP_ARN = "arn:{partition}:logs:{region}:{account}:log-group:/aws/codebuild/{stack}-image-build:*"
# general1.small (3 GB, 2 vCPUs) is the compute type of CodeBuild's free tier; Ubuntu 22.04 with
# Docker, Buildx and the AWS CLI.
BUILD_IMAGE = "aws/codebuild/standard:7.0"
COMPUTE_TYPE = "BUILD_GENERAL1_SMALL"
PLATFORM = "linux/amd64"
BUILD_TIMEOUT_MINUTES = 30
QUEUED_TIMEOUT_MINUTES = 60
SERVICES = ("backend", "frontend")
# The same build argument the compose file gives the frontend (app/docker-compose.yml).
FRONTEND_BUILD_ARGS = "--build-arg BACKEND_INTERNAL_URL=http://backend:5000"

# CodeBuild's S3 source must be a ZIP; the release is the .tar.gz the instances read and check by
# its hash. So the project has no source of its own: the build fetches that same object and checks
# the same hash. An image already pushed (a build that failed half-way) is not built again: tags
# are immutable, and a second push of one would fail.
BUILDSPEC = f"""version: 0.2
env:
  shell: bash
phases:
  pre_build:
    commands:
      - aws s3 cp "s3://$RELEASE_BUCKET/$RELEASE_KEY" release.tar.gz --only-show-errors
      - echo "$IMAGE_TAG  release.tar.gz" | sha256sum -c -
      - mkdir -p app && tar -xzf release.tar.gz -C app --no-same-owner
      - aws ecr get-login-password --region "$AWS_REGION" | docker login --username AWS --password-stdin "${{REPOSITORY_URI%%/*}}"
  build:
    commands:
      - |
        cd app
        for svc in {' '.join(SERVICES)}; do
          image="$REPOSITORY_URI:$IMAGE_TAG-$svc"
          if aws ecr describe-images --repository-name "$REPOSITORY_NAME" --image-ids "imageTag=$IMAGE_TAG-$svc" >/dev/null 2>&1; then
            echo "$image is already in the repository"
            continue
          fi
          args=()
          if [ "$svc" = frontend ]; then args=({FRONTEND_BUILD_ARGS}); fi
          docker build --platform {PLATFORM} "${{args[@]}}" -t "$image" "$svc"
          docker push "$image"
        done
"""


def _tags_of(project: dict) -> list[dict]:
    """CodeBuild spells tags key/value; the rest of the tool Key/Value."""
    return [{"Key": t["key"], "Value": t.get("value", "")} for t in project.get("tags") or []]


@register
class BuildProject(Step):
    """Privileged (Docker in the build), general1.small, no artifacts: the images are the output."""

    kind = "codebuild_project"
    gone_codes = frozenset({"ResourceNotFoundException"})
    aws_type = "AWS::CodeBuild::Project"
    listing = Listing("codebuild_project", "codebuild", "list_projects", "projects[].{name: @}", "name",
                      label="CodeBuild projects",
                      tags=BatchTags("batch_get_projects", "names", "projects", "name", 100,
                                     tags_key="tags", key_field="key", value_field="value"),
                      # Billed per build minute, by use (the free tier's 100 minutes a month first).
                      price=FREE)
    pass_build_role = actions("iam:PassRole", on=BUILD_ROLE_ARN,
                              condition={"StringEquals": {"iam:PassedToService": "codebuild.amazonaws.com"}})
    iam = Iam(create=(actions("codebuild:CreateProject", on=PROJECT_ARN), pass_build_role),
              read=(actions("codebuild:BatchGetProjects", on=PROJECT_ARN),),
              change=(actions("codebuild:UpdateProject", on=PROJECT_ARN), pass_build_role),
              delete=(actions("codebuild:DeleteProject", on=PROJECT_ARN),))

    def __init__(self):
        # Its log group exists first (its name is all the project takes), and goes after it.
        super().__init__("build-project", depends_on=("build-role", "image-repository", "assets-bucket",
                                                      created("build-log-group")))

    @classmethod
    def instances(cls, config):
        return [] if config.build_on_instance else [cls()]

    # -- find --------------------------------------------------------------------------------
    def find_all(self, ctx, known_id):
        codebuild = ctx.client("codebuild")
        names = list(dict.fromkeys(n for n in (known_id, project_name(ctx)) if n))
        found = []
        for project in codebuild.batch_get_projects(names=names).get("projects", []):
            tags = _tags_of(project)
            if project["name"] == known_id:
                ctx.claim(self.name, known_id, tags, "CodeBuild project")
            if ctx.owns(tags, self.name):
                found.append(self._resource(project))
        return found[:1]

    @staticmethod
    def _resource(project):
        return Resource(id=project["name"], attrs={"name": project["name"], "arn": project["arn"]},
                        raw={**project, "Tags": _tags_of(project)})

    # -- what it should be -------------------------------------------------------------------
    def _settings(self, ctx) -> dict:
        repository = ctx.dep("image-repository")
        variables = {"REPOSITORY_URI": repository.attrs["uri"] if repository else "",
                     "REPOSITORY_NAME": repository_name(ctx),
                     "RELEASE_BUCKET": ctx.dep("assets-bucket").id if ctx.dep("assets-bucket") else ""}
        return {
            "source": {"type": "NO_SOURCE", "buildspec": BUILDSPEC},
            "artifacts": {"type": "NO_ARTIFACTS"},
            "environment": {"type": "LINUX_CONTAINER", "image": BUILD_IMAGE, "computeType": COMPUTE_TYPE,
                            # Docker inside the build container needs the privileged mode.
                            "privilegedMode": True,
                            "environmentVariables": [{"name": k, "value": v, "type": "PLAINTEXT"}
                                                     for k, v in variables.items()]},
            "serviceRole": ctx.dep("build-role").attrs["arn"] if ctx.dep("build-role") else "",
            "timeoutInMinutes": BUILD_TIMEOUT_MINUTES,
            "queuedTimeoutInMinutes": QUEUED_TIMEOUT_MINUTES,
            "logsConfig": {"cloudWatchLogs": {"status": "ENABLED", "groupName": log_group_name(ctx)},
                           "s3Logs": {"status": "DISABLED"}},
        }

    # -- create ------------------------------------------------------------------------------
    def create(self, ctx):
        codebuild = ctx.client("codebuild")
        # A service role made seconds ago is refused as one CodeBuild cannot assume, for a while.
        project = ctx.retry("build-role", codebuild.create_project, name=project_name(ctx),
                            description=f"provision stack {ctx.stack}: the app's images",
                            tags=[{"key": t["Key"], "value": t["Value"]} for t in ctx.tags(self.name)],
                            **self._settings(ctx))["project"]
        return self._resource(project)

    # -- converge ----------------------------------------------------------------------------
    def update(self, ctx, resource, apply):
        if ctx.dep("build-role") is None or ctx.dep("image-repository") is None:
            return []  # `plan` before what it refers to exists
        have, want, changes, settings = resource.raw, self._settings(ctx), [], {}
        env, want_env = have.get("environment") or {}, want["environment"]
        for key in ("image", "computeType", "privilegedMode", "type"):
            if env.get(key) != want_env[key]:
                changes.append(f"environment {key} {env.get(key)} -> {want_env[key]}")
        have_vars = {v["name"]: v.get("value") for v in env.get("environmentVariables") or []}
        want_vars = {v["name"]: v["value"] for v in want_env["environmentVariables"]}
        if have_vars != want_vars:
            changes.append("environment variables " + ", ".join(sorted(
                k for k in set(have_vars) | set(want_vars) if have_vars.get(k) != want_vars.get(k))))
        if changes:
            settings["environment"] = want_env
        source = have.get("source") or {}
        if source.get("type") != "NO_SOURCE" or source.get("buildspec") != BUILDSPEC:
            changes.append("put back the build spec")
            settings["source"] = want["source"]
        have_logs = (have.get("logsConfig") or {}).get("cloudWatchLogs") or {}
        if have_logs.get("status") != "ENABLED" or have_logs.get("groupName") != log_group_name(ctx):
            were = have_logs.get("groupName") or "CodeBuild's own"
            changes.append(f"build logs to {log_group_name(ctx)} (were {were})")
            settings["logsConfig"] = want["logsConfig"]
        if have.get("serviceRole") != want["serviceRole"]:
            changes.append(f"service role {have.get('serviceRole')} -> {want['serviceRole']}")
            settings["serviceRole"] = want["serviceRole"]
        for key in ("timeoutInMinutes", "queuedTimeoutInMinutes"):
            if have.get(key) != want[key]:
                changes.append(f"{key} {have.get(key)} -> {want[key]}")
                settings[key] = want[key]

        def put_tags(missing):
            # UpdateProject replaces the whole set: keep the tags others added.
            merged = {t["Key"]: t["Value"] for t in resource.raw.get("Tags", [])}
            merged.update({t["Key"]: t["Value"] for t in missing})
            settings["tags"] = [{"key": k, "value": v} for k, v in merged.items()]

        changes += ctx.converge_tags(resource.raw.get("Tags", []), self.name, apply, put_tags)
        if apply and settings:
            ctx.client("codebuild").update_project(name=resource.id, **settings)
        return changes

    # -- delete ------------------------------------------------------------------------------
    def delete(self, ctx, resource):
        # Its log group is the build-log-group step's, deleted after it.
        ctx.client("codebuild").delete_project(name=resource.id)

    def outputs(self, resource):
        return {"build_project": resource.id}

    def describe(self, resource):
        env = resource.raw.get("environment") or {}
        return f"{env.get('computeType', '')}, {env.get('image', '')}"
