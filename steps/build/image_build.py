"""The build of a release's images, in CodeBuild: started only when the repository has no image
of the release's hash yet, and waited for with its phase on the display."""
import time

from provisioner.engine.context import Resource
from provisioner.engine.errors import AwsFailure, BuildFailed
from provisioner.engine.kinds import Iam, actions
from provisioner.engine.registry import Step, register
from provisioner.engine.retries import error_code, lookup

from steps.build.codebuild_project import LOG_GROUP_ARN, PROJECT_ARN, SERVICES
from steps.build.ecr_repository import REPOSITORY_ARN

# A build's statuses; every one but IN_PROGRESS is final.
IN_PROGRESS, SUCCEEDED = "IN_PROGRESS", "SUCCEEDED"
# Shown with a failed build's error: enough to see the failing command and its output.
LOG_LINES = 25
# Builds of the project looked at for one of this release already running (an interrupted `up`).
RECENT_BUILDS = 5


def image_tags(sha256: str) -> dict[str, str]:
    """The tag of each service's image: the release's content hash and the service."""
    return {service: f"{sha256}-{service}" for service in SERVICES}


def _variable(build: dict, name: str) -> str | None:
    for variable in (build.get("environment") or {}).get("environmentVariables") or []:
        if variable.get("name") == name:
            return variable.get("value")
    return None


@register
class ImageBuild(Step):
    """Both images of the release in the repository, tagged `<sha256>-backend` and
    `<sha256>-frontend`. Found by those tags: a release that has its images makes no build."""

    kind = "image_build"
    tagged = False
    found_through = "ecr_repository"
    gone_codes = frozenset({"RepositoryNotFoundException"})
    # Queued, provisioning and building both images: 3-5 minutes on general1.small, more when
    # CodeBuild queues. The project's own timeout (30 minutes) ends a build that hangs.
    create_timeout = 2400
    aws_type = "AWS::CodeBuild::Build"
    iam = Iam(create=(actions("codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:ListBuildsForProject",
                              on=PROJECT_ARN),
                      # A failed build's last log lines, for the error.
                      actions("logs:GetLogEvents", on=LOG_GROUP_ARN)),
              read=(actions("ecr:DescribeImages", on=REPOSITORY_ARN),),
              delete=(actions("ecr:BatchDeleteImage", on=REPOSITORY_ARN),))

    def __init__(self):
        super().__init__("image-build", depends_on=("app-release", "image-repository", "build-project"))

    @classmethod
    def instances(cls, config):
        return [] if config.build_on_instance else [cls()]

    # -- find: the release's images, by their tags -------------------------------------------
    def find_all(self, ctx, known_id):
        repository, release = ctx.dep("image-repository"), ctx.dep("app-release")
        sha256 = release.attrs.get("sha256") if release is not None else known_id
        if repository is None or not sha256:
            return []
        tags = image_tags(sha256)
        # Both or nothing: ImageNotFoundException when either is missing (a build that failed
        # half-way; the next build pushes only the missing one).
        found = lookup(ctx.client("ecr").describe_images, repositoryName=repository.id,
                       imageIds=[{"imageTag": t} for t in tags.values()],
                       gone=frozenset({"ImageNotFoundException", "RepositoryNotFoundException"}))
        if found is None or len(found.get("imageDetails", [])) < len(tags):
            return []
        return [self._resource(repository, sha256)]

    @staticmethod
    def _resource(repository, sha256):
        uri = repository.attrs["uri"]
        return Resource(id=sha256, attrs={"tag": sha256, "repository_uri": uri,
                                          **{f"{s}_image": f"{uri}:{t}" for s, t in image_tags(sha256).items()}})

    # -- create: start a build (or adopt the one running) and wait for it ----------------------
    def create(self, ctx):
        release = ctx.dep("app-release").attrs
        project = ctx.dep("build-project").id
        codebuild = ctx.client("codebuild")
        build = self._running(ctx, project, release["sha256"])
        if build is None:
            build = codebuild.start_build(
                projectName=project,
                environmentVariablesOverride=[
                    {"name": "IMAGE_TAG", "value": release["sha256"], "type": "PLAINTEXT"},
                    {"name": "RELEASE_KEY", "value": release["key"], "type": "PLAINTEXT"}],
                # A retried StartBuild within 5 minutes returns the same build, not a second one.
                idempotencyToken=ctx.client_token(f"{self.name}:{release['sha256']}"))["build"]
        self._wait(ctx, build["id"])
        return self._resource(ctx.dep("image-repository"), release["sha256"])

    def _running(self, ctx, project, sha256):
        """A build of this release still running (an interrupted `up` started it): waited for,
        not started twice."""
        codebuild = ctx.client("codebuild")
        ids = codebuild.list_builds_for_project(projectName=project, sortOrder="DESCENDING").get("ids", [])
        if not ids:
            return None
        for build in codebuild.batch_get_builds(ids=ids[:RECENT_BUILDS]).get("builds", []):
            if build.get("buildStatus") == IN_PROGRESS and _variable(build, "IMAGE_TAG") == sha256:
                return build
        return None

    def _wait(self, ctx, build_id):
        import tenacity

        codebuild = ctx.client("codebuild")
        started = time.monotonic()
        deadline = ctx.timeout(self.create_timeout)

        def poll():
            build = codebuild.batch_get_builds(ids=[build_id])["builds"][0]
            elapsed = int(time.monotonic() - started)
            ctx.activity(f"CodeBuild {build.get('currentPhase', 'SUBMITTED')} ({elapsed // 60}m {elapsed % 60:02d}s), "
                         f"build {build_id}", state="building images")
            return build

        try:
            build = tenacity.Retrying(
                retry=tenacity.retry_if_result(lambda b: b.get("buildStatus") == IN_PROGRESS),
                wait=tenacity.wait_fixed(ctx.poll_interval), stop=tenacity.stop_after_delay(deadline),
                sleep=ctx.sleep)(poll)
        except tenacity.RetryError as e:
            phase = e.last_attempt.result().get("currentPhase")
            raise AwsFailure(f"gave up waiting for CodeBuild build {build_id} after {deadline:.0f}s (still {phase})",
                             hint="it may still finish: run `provision up` again to wait for it, or raise "
                                  "--timeout-scale") from None
        if build.get("buildStatus") != SUCCEEDED:
            raise self._failure(ctx, build)

    def _failure(self, ctx, build) -> BuildFailed:
        failed = next((p for p in build.get("phases") or [] if p.get("phaseStatus") not in (None, SUCCEEDED)), {})
        why = "; ".join(c.get("message", "") for c in failed.get("contexts") or [] if c.get("message"))
        lines = self._log_tail(ctx, build.get("logs") or {})
        message = (f"step {self.name}: CodeBuild build {build['id']} {build.get('buildStatus')}"
                   f"{' in phase ' + failed['phaseType'] if failed.get('phaseType') else ''}"
                   f"{': ' + why if why else ''}")
        if lines:
            message += "; its last log lines:\n" + "\n".join(f"  | {line}" for line in lines)
        group = (build.get("logs") or {}).get("groupName")
        return BuildFailed(message, code=build.get("buildStatus"),
                           hint=(f"the whole log: `aws logs tail {group} --since 1h`; " if group else "")
                           + "fix the app and run `provision up` again, or use --build-on-instance")

    @staticmethod
    def _log_tail(ctx, logs: dict) -> list[str]:
        from botocore.exceptions import ClientError

        group, stream = logs.get("groupName"), logs.get("streamName")
        if not group or not stream:
            return []
        try:
            events = ctx.client("logs").get_log_events(logGroupName=group, logStreamName=stream,
                                                       limit=LOG_LINES, startFromHead=False)["events"]
        except ClientError as e:
            return [f"(the build's log could not be read: {error_code(e)})"]
        return [e["message"].rstrip("\n") for e in events if e.get("message", "").strip()]

    # -- delete: the release's images (the repository's own delete takes any others) ----------
    def delete(self, ctx, resource):
        repository = ctx.dep("image-repository")
        name = repository.id if repository is not None else None
        if name is None:
            return
        ctx.client("ecr").batch_delete_image(repositoryName=name,
                                             imageIds=[{"imageTag": t} for t in image_tags(resource.id).values()])

    def outputs(self, resource):
        return {"image_tag": resource.id}

    def describe(self, resource):
        return f"{resource.attrs.get('repository_uri', '')}:{resource.id[:12]}...-{{{','.join(SERVICES)}}}"
