"""Same as import.sh but through the docker SDK (what the real driver would call)."""
import sys, time, docker
work = sys.argv[1]
tag = open(f"{work}/TAG").read().strip()
repo, _, ver = tag.partition(":")
api = docker.from_env().api
t0 = time.monotonic()
out = api.import_image_from_file(f"{work}/rootfs.tar", repository=repo, tag=ver + "-sdk",
                                 changes=['CMD ["/usr/local/sbin/node-init"]', "EXPOSE 22 80 443",
                                          f"LABEL pressluft.image.inputs={tag}"])
print(out.strip()[:200], f"{time.monotonic() - t0:.2f} s")
