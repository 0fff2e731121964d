"""The view kit both tabs build with: gradio's version differences (`compat`), config keys as form fields (`form`)
and their widgets (`widgets`), the HTML of messages, progress and the loss chart (`markup`), and what one page
shows of a job (`job_view`)."""
