from skalds import Skalds
from skalds.config.skald_config import SkaldConfig
from my_worker import MyWorker
from complex_worker import ComplexWorker

config = SkaldConfig(
    skald_mode="edge",  # 或 "node"
    yaml_file="all_workers.yml",
    redis_host="localhost",
    kafka_host="127.0.0.1",
    mongo_host="mongodb://root:root@localhost:27017/"
)

app = Skalds(config)
app.register_task_worker(MyWorker)
app.register_task_worker(ComplexWorker)
app.run()
