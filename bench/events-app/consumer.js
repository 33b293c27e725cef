// Counts the records it is given; nimbus deletes the batch when this returns.
let processed = 0;
exports.handler = async (event) => {
  processed += event.Records.length;
  return { processed };
};
