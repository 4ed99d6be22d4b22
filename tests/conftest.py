from tests.kubeapi.fixtures import kube_api  # noqa: F401
